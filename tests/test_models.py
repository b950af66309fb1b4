"""Every registered model, parametrised over ``list_models()``: a new model is tested here
without editing a test (the default tier: one model per family; the others are marked slow).
Built at two tiny sizes (a square and a non-square one) and run forward; parameter count (meta
device, no weights allocated) against the reference table."""

from __future__ import annotations

import pytest
import torch

from pacabench.models import FAMILIES, count_params_of, create_model, list_models
from pacabench.reports.paper import load_reference
from tests.conftest import one_per_family

SPECS = list_models()
SIZES = [(64, 64), (64, 96)]


def _measured_params_m() -> dict[str, tuple[float, int]]:
    """model -> (params in millions, decimals written) from the authors' code or timm, with fvcore."""
    out = {}
    for r in load_reference():
        if r.source_kind in ("authors_code_fvcore", "timm_fvcore") and r.values.get("params_m") is not None:
            text = r.text["params_m"]
            out.setdefault(r.model, (r.values["params_m"], len(text.split(".")[1]) if "." in text else 0))
    return out


MEASURED = _measured_params_m()


def test_every_model_has_a_known_family_and_most_a_reference():
    assert {s.family for s in SPECS} == set(FAMILIES)
    assert len(SPECS) == len({s.name for s in SPECS})
    unreferenced = [s.name for s in SPECS if s.name not in MEASURED]
    assert unreferenced == ["pvt_v2_b2_li"]  # timm's linear-attention variant: no published count


@pytest.mark.parametrize("spec", one_per_family(SPECS, lambda s: s.name), ids=lambda s: s.name)
def test_builds_and_runs_at_two_sizes(spec):
    model = None
    for hw in SIZES:
        if model is None or spec.family_spec.img_size_arg:  # Swin is built for its input size
            model = create_model(spec.name, img_size=hw, num_classes=10)
        with torch.inference_mode():
            y = model(torch.randn(1, 3, *hw))
        assert y.shape == (1, 10), (spec.name, hw)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("spec", one_per_family(SPECS, lambda s: s.name), ids=lambda s: s.name)
def test_params_match_the_spec_and_the_reference(spec):
    counted = count_params_of(spec.name, build=True)  # on the meta device
    assert spec.params == counted == count_params_of(spec.name)  # `pacabench models` shows the spec's
    if spec.name in MEASURED:
        ref, decimals = MEASURED[spec.name]
        assert counted / 1e6 == pytest.approx(ref, abs=0.51 * 10**-decimals)
