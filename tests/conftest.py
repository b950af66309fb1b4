import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PACABENCH_COLLECT_ENV", "0")  # torch.utils.collect_env takes seconds per run

import pytest  # noqa: E402
import torch  # noqa: E402

import pacabench.models  # noqa: E402,F401 - registers our models with timm


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
