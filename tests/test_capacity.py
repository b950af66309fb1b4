"""Capacity search: a planted limit found exactly; OOMs as data; a real CPU run brackets the budget."""

from __future__ import annotations

import pytest

from pacabench.errors import UsageError
from pacabench.measure.capacity import STRIDE, find_capacity, parse_memory, search


def _fake(limit_fn, calls):
    def probe(size):
        calls.append(size)
        return limit_fn(size)

    return probe


@pytest.mark.parametrize("limit", [1, 2, 37, 64, 1000, 4095])
def test_planted_batch_limit_found_exactly(limit):
    calls = []
    budget = 100.0 + 3.0 * limit + 1.0  # peak(b) = 100 + 3b fits up to b = limit
    cap = search(_fake(lambda b: 100.0 + 3.0 * b, calls), budget, start=1, limit=4096)
    assert cap.answer == limit
    assert cap.peak_mb == 100.0 + 3.0 * limit
    nxt = cap.probe_at(limit + 1)
    assert nxt is not None and not nxt.fits and nxt.status == "over"
    assert len(calls) == len(set(calls))  # no size measured twice
    assert len(calls) < 40  # bisection, not a scan


def test_planted_resolution_limit_in_stride_multiples():
    # peak grows with tokens; the largest fitting resolution is 23 strides = 736
    def peak(r):
        assert r % STRIDE == 0
        return 50.0 + 0.001 * r * r

    budget = peak(736) + 0.5
    cap = search(_fake(peak, []), budget, axis="resolution", start=64, step=STRIDE, limit=8192, power=2.0)
    assert cap.answer == 736 and cap.axis == "resolution"
    assert cap.probe_at(768).status == "over"


def test_out_of_memory_is_data_and_other_errors_propagate():
    def probe(b):
        if b > 10:
            raise MemoryError("can't allocate memory")
        return 1.0  # under the budget: only the OOM limits it

    cap = search(probe, 1000.0, start=1, limit=256)
    assert cap.answer == 10
    assert cap.probe_at(11).status == "oom" and cap.probe_at(11).peak_mb is None

    def broken(b):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        search(broken, 1000.0)


def test_nothing_fits_and_limit_fits():
    none = search(lambda b: 500.0, 100.0, start=1, limit=64)
    assert none.answer is None and [p.size for p in none.probes] == [1]
    capped = search(lambda b: 1.0, 100.0, start=1, limit=64)
    assert capped.answer == 64 and capped.capped


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GiB", 4 * 2**30),
        ("512MiB", 512 * 2**20),
        ("24GB", 24 * 10**9),
        ("1.5g", int(1.5 * 2**30)),
        ("100", 100),
    ],
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "4 parsecs", "-1GiB", "0", "GiB"])
def test_parse_memory_refuses(text):
    with pytest.raises(UsageError):
        parse_memory(text)


def test_both_axes_refused():
    with pytest.raises(UsageError, match="not both"):
        find_capacity("pvt_v2_b0", 2**30, resolution=64, batch=2)


def test_real_cpu_run_brackets_the_budget():
    """pvt_v2_b0 inference at 64 px: the answer's measured peak is under the budget and the next
    batch's is over it."""
    from pacabench.runs.runner import is_oom

    budget = 40 * 2**20
    cap = find_capacity("pvt_v2_b0", budget, mode="inference", resolution=64, limit=64, is_oom=is_oom)
    assert cap.answer is not None and 1 <= cap.answer < 64
    assert cap.peak_mb <= 40.0
    nxt = cap.probe_at(cap.answer + 1)
    assert nxt is not None and nxt.peak_mb > 40.0


def test_cli_json_and_bad_input(capsys):
    import json

    from pacabench.cli import main

    rc = main(
        [
            "capacity",
            "pvt_v2_b0",
            "--mode",
            "inference",
            "--memory",
            "1GiB",
            "-r",
            "64",
            "--limit",
            "2",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["axis"] == "batch" and out["answer"] == 2 and out["capped"]
    assert [p["size"] for p in out["probes"]] == [1, 2] and all(p["fits"] for p in out["probes"])
    for argv, msg in [
        (["capacity", "pvt_v2_b0", "--memory", "lots"], "memory must be"),
        (["capacity", "pvt_v2_b0", "--memory", "1GiB", "--mode", "fly"], "mode must be"),
        (["capacity", "pvt_v2_bX", "--memory", "1GiB"], "unknown model"),
        (["capacity", "pvt_v2_b0", "--memory", "1GiB", "-r", "64", "-b", "2"], "not both"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("pacabench: error:") and msg in err and "Traceback" not in err
