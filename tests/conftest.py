"""Shared test set-up: the two tiers, one model per family, one thread, session caches of FLOP
counts, and a small GEMM calibration.

Tiers. ``pytest -q`` runs the default tier: pyproject's ``addopts`` deselects the ``slow`` marker
(one model per family, tiny inputs). ``pytest -q -m "slow or not slow"`` runs every test
(``.ci/run``, ``nox -s tests_full``); ``-m slow`` only the slow ones. A later ``-m`` replaces the
default one, so ``-m cuda`` and ``-m slurm`` select as before; a slow test named by its id needs
``-m slow`` too. In the default tier each property test runs a quarter of its hypothesis
examples (``tests/_tier.py``); the other selections run them all.
"""

from __future__ import annotations

import copy
import functools
import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PACABENCH_COLLECT_ENV", "0")  # torch.utils.collect_env takes seconds per run
# one intra-op thread, here and in the interpreters the tests start (isolated cases, jobs, the
# CLI): on a shared 2-core machine two threads contend with the neighbours' processes, and a
# PaCa-T forward at 96² took 2.1 s with two threads against 0.15 s with one
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import pacabench.models  # noqa: E402,F401 - registers our models with timm
from pacabench.measure import kernels  # noqa: E402
from pacabench.models import list_models  # noqa: E402
from tests import _tier  # noqa: E402


def _representatives() -> frozenset[str]:
    """The smallest registered model of each family (PaCa-ViT tiny, Swin-T, PVT-Tiny, PVTv2-b0):
    the default tier's model; a new family gets one without editing a test."""
    smallest: dict[str, object] = {}
    for spec in list_models():
        if spec.family not in smallest or spec.params < smallest[spec.family].params:
            smallest[spec.family] = spec
    return frozenset(s.name for s in smallest.values())


REPRESENTATIVES = _representatives()


def one_per_family(values, name=None, also=()) -> list:
    """``values`` as parameters, those whose model (``name(value)``, or the value itself) is
    neither its family's representative nor in ``also`` marked ``slow``: every model in the full
    set, one per family in the default tier. The ids stay those of the values."""
    keep = REPRESENTATIVES | set(also)
    name = name or (lambda v: v)
    return [v if name(v) in keep else pytest.param(v, marks=pytest.mark.slow) for v in values]


# ------------------------------------------------------------------------------ FLOP counts


def _hw(resolution) -> tuple[int, int]:
    """A cache key's size: 224 and (224, 224) are the same input."""
    return (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)


@functools.cache
def _fvcore_flops(name: str, resolution: tuple[int, int], build: tuple[tuple[str, object], ...]):
    from pacabench.measure.flops import count_flops
    from pacabench.models import create_model

    return count_flops(create_model(name, **dict(build)).eval(), resolution)


@pytest.fixture(scope="session")
def flops_of():
    """``flops_of(name, resolution, **build_kwargs)``: fvcore's count (``measure.flops.count_flops``)
    of ``create_model(name, **build_kwargs)``, traced once per session: several files check the
    same model's count against their own reference. For models built from a name only; the
    tests of the counters themselves count the models they build."""

    def get(name: str, resolution, **build):
        return _fvcore_flops(name, _hw(resolution), tuple(sorted(build.items())))

    return get


_RUNNER_COUNTS: dict = {}


@pytest.fixture(scope="session", autouse=True)
def _runner_counts_once_per_session():
    """The runner counts FLOPs of the model it built from the case's name (the ``flops`` metric,
    and torch's count under fake tensors for every timed row's efficiency): 2–5 s a case on a
    loaded 2-core CPU, the same few cases in run after run. Here the runner's ``_cost_model`` (the
    one place it builds a cost case's model) tags each model with its case's build settings, and
    its ``count_flops_as`` counts a tagged model once per (build, size, counter) in the session.
    A test that plants its own model builds untagged models, which are counted every time. Both
    names are looked up plainly: a rename fails here instead of silently dropping the cache."""
    from pacabench.runs import runner

    build, count = runner._cost_model, runner.count_flops_as

    def cost_model(case):
        model = build(case)
        model.pacabench_test_build = repr(
            (case.model, case.head, case.resolution, case.checkpoint, case.kwargs)
        )
        return model

    def count_flops_as(model, resolution, counter="fvcore"):
        tag = getattr(model, "pacabench_test_build", None)
        if tag is None:
            return count(model, resolution, counter)
        key = (tag, _hw(resolution), counter)
        if key not in _RUNNER_COUNTS:
            _RUNNER_COUNTS[key] = count(model, resolution, counter)
        return copy.deepcopy(_RUNNER_COUNTS[key])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "_cost_model", cost_model)
        mp.setattr(runner, "count_flops_as", count_flops_as)
        yield


# ------------------------------------------------------------------------------ GEMM rate

_REAL_GEMM_RATE = kernels.gemm_rate
_GEMM_N = 256


@functools.cache
def _small_gemm(device: str, dtype: str, iters: int, warmup: int, time_budget_s: float | None):
    return _REAL_GEMM_RATE(device, dtype, _GEMM_N, iters, warmup=warmup, time_budget_s=time_budget_s)


@pytest.fixture(autouse=True)
def _small_gemm_calibration(request, monkeypatch):
    """A run calibrates the machine's GEMM rate (``efficiency``'s ceiling) with a 2048³ matmul,
    about 2 s per run and dtype here; in the tests a 256³ one stands in, measured once per
    session. Tests marked ``real_gemm`` (tests/test_kernels.py) get the real calibration; the
    efficiency tests plant their own peak and check the arithmetic against it."""
    if request.node.get_closest_marker("real_gemm"):
        return

    def gemm_rate(device="cpu", dtype="fp32", n=None, iters=10, *, warmup=2, time_budget_s=None):
        if n is not None:
            return _REAL_GEMM_RATE(device, dtype, n, iters, warmup=warmup, time_budget_s=time_budget_s)
        return _small_gemm(str(device), dtype, iters, warmup, time_budget_s)

    monkeypatch.setattr(kernels, "gemm_rate", gemm_rate)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    """The tier, before any test module is imported: the default one is pyproject's ``not slow``."""
    from hypothesis import settings

    _tier.FULL = (config.getoption("markexpr") or "").strip() != "not slow"
    settings.register_profile("default-tier", max_examples=_tier.examples(100))
    if not _tier.FULL:  # property tests that name no count: 25 examples instead of hypothesis' 100
        settings.load_profile("default-tier")
