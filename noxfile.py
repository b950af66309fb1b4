"""nox sessions: ``tests`` (pytest, the default tier: ``slow`` deselected), ``tests_full`` (every
test, as ``.ci/run``), ``lint`` (ruff), ``regression`` (smoke suite vs its baseline), ``docs``
(the documentation site, ``mkdocs build --strict``; no torch), ``slurm`` (the SLURM tests against
a one-node cluster on this machine; root).

    nox -s tests lint            # first time: builds the venvs (~1 min each with the torch stack)
    nox -R -s tests_full         # every test, the slow ones too (reuses the venv of an earlier run)
    nox -R -s regression         # -R reuses an existing venv: seconds instead of a minute
    nox -R -s regression -- results/baselines/other.jsonl   # compare against another baseline
    nox -s docs                  # the site into site/ (the reference pages generated from the code)

Every session that imports pacabench installs ``torch==2.14.1 torchvision==0.29.1`` first: they
are the pair whose CPU wheels load together (see the README's install notes); a plain
``pip install -e .`` could otherwise pick a torchvision built for another torch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "regression"]

TORCH = ("torch==2.14.1", "torchvision==0.29.1")
LINT_PATHS = ("pacabench", "tests", "noxfile.py")
SMOKE_BASELINE = "results/baselines/smoke.jsonl"
FULL = "slow or not slow"  # replaces the default tier's `-m "not slow"` (pyproject's addopts)


def _install(session: nox.Session) -> None:
    session.install(*TORCH)
    session.install("-e", ".[dev]")


@nox.session
def tests(session: nox.Session) -> None:
    """The default tier (pytest; pyproject's addopts deselect ``slow``; extra arguments are passed on)."""
    _install(session)
    session.run("pytest", "-q", *session.posargs, env={"MPLBACKEND": "Agg"})


@nox.session
def tests_full(session: nox.Session) -> None:
    """Every test, the ``slow`` ones too (what ``.ci/run`` runs; extra arguments are passed on)."""
    _install(session)
    session.run("pytest", "-q", "-m", FULL, *session.posargs, env={"MPLBACKEND": "Agg"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check (ruff only: no need for the torch stack)."""
    session.install("ruff")
    session.run("ruff", "check", *LINT_PATHS)
    session.run("ruff", "format", "--check", *LINT_PATHS)


@nox.session
def regression(session: nox.Session) -> None:
    """Run the smoke suite twice into a temporary folder and compare with the committed baseline.

    Enforced: params and FLOPs match the baseline to 0.1 %, peak memory stays within its band,
    no case fails that passed in the baseline, no baseline case is missing. Latency is compared
    too (a regression must show in both runs: best of 2), but on a shared CPU it is only reported
    unless PACABENCH_STRICT_LATENCY=1: on these machines a neighbour's load slows a forward pass
    by up to ~70x for minutes at a time, which no tolerance band survives. Set it on a dedicated
    runner or a GPU machine. ``-- BASELINE`` compares against another file.
    """
    _install(session)
    baseline = session.posargs[0] if session.posargs else SMOKE_BASELINE
    if not Path(baseline).exists():
        session.error(f"no baseline at {baseline} (write one with `pacabench baseline update smoke`)")
    results = Path(session.create_tmp()) / "results"
    shutil.rmtree(results, ignore_errors=True)
    runs = []
    for run_id in ("regression-1", "regression-2"):
        session.run(
            "pacabench", "run", "suites/smoke.yaml",
            "--results-dir", str(results), "--run-id", run_id,
            "--no-progress", "--no-report",
            env={"MPLBACKEND": "Agg"},
        )  # fmt: skip
        runs.append(str(results / "smoke" / run_id))
    compare = ("pacabench", "compare", baseline, *runs)
    session.run(*compare, "--metrics", "params,flops,memory,accuracy", "--fail-on-missing")
    strict = os.environ.get("PACABENCH_STRICT_LATENCY", "") not in ("", "0")
    if not strict:
        session.log("latency: reported, not enforced (set PACABENCH_STRICT_LATENCY=1 to enforce)")
    session.run(*compare, "--metrics", "latency", success_codes=None if strict else [0, 1])


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with ``mkdocs build --strict`` (any warning fails it).

    The reference pages are written at build time from the code (docs/hooks/reference.py calls
    ``pacabench.docs_ref``), which imports neither torch nor timm: the package is installed
    without its dependencies, and only what the generation imports is added (the docs extra,
    typer, PyYAML, rich)."""
    session.install("-e", ".", "--no-deps")
    session.install(*_docs_requirements())
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


DOCS_IMPORTS = ("typer", "pyyaml", "rich")  # the core dependencies the reference pages import


def _docs_requirements() -> list[str]:
    """pyproject's ``docs`` extra plus its pins of ``DOCS_IMPORTS`` (not the torch stack)."""
    import tomllib

    project = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]
    light = [d for d in project["dependencies"] if re.split(r"[<>=!~\[ ]", d)[0].lower() in DOCS_IMPORTS]
    return [*project["optional-dependencies"]["docs"], *light]


SLURM_SCRIPT = "tests/cluster/local-slurm.sh"


@nox.session
def slurm(session: nox.Session) -> None:
    """tests/test_slurm.py against a real one-node SLURM: started with tests/cluster/local-slurm.sh
    unless one is up (needs root and the slurm-wlm and munge packages), stopped after if started here."""
    _install(session)
    up = subprocess.run([SLURM_SCRIPT, "status"], capture_output=True).returncode == 0
    if not up:
        session.run(SLURM_SCRIPT, "start", external=True)
    try:
        session.run(
            "pytest", "-q", "-m", "slurm", "tests/test_slurm.py", *session.posargs, env={"MPLBACKEND": "Agg"}
        )
    finally:
        if not up:
            session.run(SLURM_SCRIPT, "stop", external=True)
