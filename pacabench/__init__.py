"""pacabench: benchmark PaCa-ViT, Swin, PVT v1 and PVTv2 on FLOPs, latency, memory and accuracy."""

__version__ = "0.1.0"
