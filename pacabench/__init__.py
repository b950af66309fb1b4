"""pacabench: benchmark PaCa-ViT, Swin, PVT v1 and PVTv2 on FLOPs, latency, memory and accuracy."""

import os as _os

# kineto (torch.profiler, used for CPU peak memory) logs at ERROR level by default; keep its
# native chatter off the terminal unless the user asked for it.
_os.environ.setdefault("KINETO_LOG_LEVEL", "5")

__version__ = "0.1.0"
