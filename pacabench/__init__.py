"""pacabench: benchmark PaCa-ViT, Swin, PVT v1 and PVTv2 on FLOPs, latency, memory and accuracy.

The Python API (``pacabench.api``; the ``pacabench`` command wraps it)::

    import pacabench

    r = pacabench.run("suites/smoke.yaml")  # measure a suite into results/smoke/<run-id>/
    df = r.frame()  # its rows as a pandas DataFrame
    print(pacabench.report(r))  # the markdown report
    cmp = pacabench.compare("results/baselines/smoke.jsonl", r)  # cmp.ok, cmp.regressions

The names are loaded on first use: ``import pacabench`` imports no torch, timm or pandas.
"""

import importlib as _importlib
import os as _os

# kineto (torch.profiler, used for CPU peak memory) logs at ERROR level by default; keep its
# native chatter off the terminal unless the user asked for it.
_os.environ.setdefault("KINETO_LOG_LEVEL", "5")

__version__ = "0.1.0"

_API = ("Run", "run", "load", "compare", "report", "status", "collect")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    """``pacabench.run`` and the other API names, imported from ``pacabench.api`` when first used."""
    if name in _API:
        value = getattr(_importlib.import_module("pacabench.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pacabench' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
