#!/usr/bin/env bash
# The GPU proof in one call: CUDA tests, then the high-resolution suite, its report and plots.
#
#   bash benchmarks/gpu/run.sh [OUTDIR]            # on the GPU machine (OUTDIR default: $OUT, else out/gpu)
#   bash benchmarks/gpu/run.sh --dry-run OUTDIR    # anywhere, no CUDA: same stages at tiny sizes on the CPU
#   options (before OUTDIR): --suite FILE (default suites/high_resolution.yaml), --no-tests (skip
#   stage 3), --no-modes (skip stage 4), --no-suite (skip stage 5)
#
# Stages (each logged, timed, and run even when an earlier one failed):
#   1. packages: install .whl/ (built by benchmarks/gpu/wheels.sh) into a private folder first on
#      PYTHONPATH; pacabench itself runs from this tree (PYTHONPATH=.)
#   2. environment: nvidia-smi, torch.utils.collect_env, package versions
#   3. pytest -m cuda (tests/test_cuda.py, tests/test_gpu_cuda.py): CUDA-event timing vs
#      torch.utils.benchmark, allocator peak vs known allocations, OOM rows under a memory cap,
#      autocast rows, 1-GPU NCCL eval; CUDA-graph capture and replay, profiler busy time, NVML energy
#   4. latency modes: suites/gpu_modes.yaml (4 tiny models, 512²/1024², b1/b8) under
#      --latency-mode eager, cuda_graph and compiled (compiled at 512² only: one compile per model
#      and shape); each run stopped (SIGINT, rows kept) at its share of the budget
#   5. suites/high_resolution.yaml, in one process, stopped (SIGINT: finished rows kept) when the
#      script's time budget runs out: GPU_RUN_BUDGET_S, default 480 s for the whole script (the
#      device lends ~15 min a session, start-up included)
#   6. report (markdown, HTML with plots, CSV), modes/ratio/memory summary (benchmarks/gpu/summarize.py)
#   7. everything packed into OUTDIR/gpu-results.tar.gz; run.log, summary.md, report.md and
#      pytest-cuda.txt also beside it (the device tool brings back at most 8 files)
# Exit status: 0 when every stage passed, 1 otherwise (the stages' own codes are in run.log).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
REPO=$(pwd)

DRY=0
TESTS=1
RUN_MODES=1
RUN_SUITE=1
MODES_SUITE=suites/gpu_modes.yaml
SUITE=suites/high_resolution.yaml
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1; shift ;;
        --no-tests) TESTS=0; shift ;;
        --no-suite) RUN_SUITE=0; shift ;;
        --no-modes) RUN_MODES=0; shift ;;
        --suite) SUITE=${2:?--suite needs a file}; shift 2 ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ -f "$SUITE" ] || { echo "run.sh: no such suite: $SUITE" >&2; exit 2; }
OUTDIR=${1:-${OUT:-out/gpu}}
PY=${PYTHON:-python3}
BUDGET=${GPU_RUN_BUDGET_S:-480}
START=$(date +%s)
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pacabench-gpu.XXXXXX")
STAMP=$(date -u +%Y-%m-%d)

elapsed() { echo $(( $(date +%s) - START )); }
stage() { echo; echo "== [+$(elapsed)s] $*"; }
record() {  # record NAME RC: a stage's outcome, kept in a file (the stages run inside a pipeline)
    echo "-- $1: exit $2"
    if [ "$2" -ne 0 ]; then echo "$1($2)" >> "$WORK/failed"; fi
}

main() {
    echo "pacabench GPU proof: $( [ $DRY = 1 ] && echo dry run || echo full run ), $(date -u +%FT%TZ), budget ${BUDGET}s"
    echo "repo $REPO, commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown), out $OUTDIR"

    stage "1. packages"
    if [ $DRY = 0 ] && compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$WORK/site" .whl/*.whl
        record wheels $?
        export PYTHONPATH="$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
    else
        export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export MPLBACKEND=Agg PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
    "$PY" -c "import torch, torchvision, timm, fvcore, pycocotools, pandas, typer, rich, yaml, matplotlib
import pacabench.models
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
print('torchvision', torchvision.__version__, 'timm', timm.__version__, 'pandas', pandas.__version__)"
    local rc=$?
    record imports $rc
    if [ $rc -ne 0 ]; then echo "packages missing: build .whl/ with benchmarks/gpu/wheels.sh and carry it"; return; fi
    if [ $DRY = 0 ]; then
        "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
            || { record cuda 1; echo "no CUDA device: use --dry-run on a CPU machine"; return; }
    fi

    stage "2. environment"
    mkdir -p "$WORK/env"
    if command -v nvidia-smi >/dev/null; then nvidia-smi > "$WORK/env/nvidia-smi.txt" 2>&1; fi
    timeout 60 "$PY" -m torch.utils.collect_env > "$WORK/env/collect_env.txt" 2>&1
    "$PY" - > "$WORK/env/packages.txt" 2>&1 <<'EOF'
import importlib.metadata as md
for name in ("torch", "torchvision", "timm", "fvcore", "iopath", "pycocotools", "numpy", "pandas",
             "typer", "rich", "pyyaml", "matplotlib", "pytest", "triton", "nvidia-ml-py"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "-")
EOF
    head -20 "$WORK/env/nvidia-smi.txt" 2>/dev/null
    cat "$WORK/env/packages.txt"

    stage "3. pytest -m cuda"
    if [ $TESTS = 1 ]; then
        # warnings are not what these tests prove: another machine's package versions must not fail them
        timeout 300 "$PY" -m pytest -m cuda tests/test_cuda.py tests/test_gpu_cuda.py -q -rA -p no:cacheprovider \
            -W ignore::DeprecationWarning -W ignore::FutureWarning -W ignore::UserWarning \
            --junitxml="$WORK/pytest-cuda.xml" > "$WORK/pytest-cuda.txt" 2>&1
        rc=$?
        tail -25 "$WORK/pytest-cuda.txt"
        [ $DRY = 1 ] && [ $rc -eq 5 ] && rc=0  # dry run: every test skipped is the expected outcome
        record pytest-cuda $rc
    else
        echo "skipped (--no-tests)"
    fi

    if [ $RUN_MODES = 1 ]; then modes; fi
    if [ $RUN_SUITE = 0 ]; then report; return; fi
    stage "5. suite"
    local suite=$SUITE
    if [ $DRY = 1 ]; then
        suite="$WORK/$(basename "$SUITE")"
        "$PY" benchmarks/gpu/dry_suite.py "$SUITE" "$suite"
        record dry-suite $?
    fi
    local left=$(( BUDGET - $(elapsed) - 45 ))  # keep 45 s for the report and the archive
    if [ $left -lt 60 ] && [ $DRY = 0 ]; then echo "under 60 s left: suite skipped"; report; return; fi
    if [ $left -lt 30 ]; then left=30; fi
    echo "suite $suite, at most ${left}s"
    timeout --signal=INT --kill-after=30 $left "$PY" -m pacabench run "$suite" \
        --results-dir "$WORK/results" --run-id "$STAMP" --no-progress --no-report
    rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 130 ]; then
        echo "suite stopped by the time budget: the rows measured so far are kept"
        rc=0
    fi
    record suite $rc
    RUN=$(ls -d "$WORK"/results/*/"$STAMP" 2>/dev/null | head -1)
    report
}

modes() {  # stage 4: suites/gpu_modes.yaml under each latency mode, each within its budget share
    stage "4. latency modes"
    local mode suite share left rc
    for mode in eager cuda_graph compiled; do
        suite="$WORK/gpu_modes-$mode.yaml"
        if [ $DRY = 1 ] && [ $mode = compiled ]; then
            "$PY" benchmarks/gpu/dry_suite.py --first-model "$MODES_SUITE" "$suite"
        elif [ $DRY = 1 ]; then
            "$PY" benchmarks/gpu/dry_suite.py "$MODES_SUITE" "$suite"
        elif [ $mode = compiled ]; then
            "$PY" benchmarks/gpu/dry_suite.py --first-resolution "$MODES_SUITE" "$suite"
        else
            cp "$MODES_SUITE" "$suite"
        fi
        # of what is left (less 60 s for the report and the suite stage): eager 1/5, graph 1/4,
        # compiled the rest (8 compiles of ~25 s: the stage a short budget cuts first)
        share=$( [ $mode = eager ] && echo 5 || { [ $mode = cuda_graph ] && echo 4 || echo 1; } )
        left=$(( (BUDGET - $(elapsed) - 60) / share ))
        if [ $left -lt 30 ]; then left=30; fi
        echo "-- $mode: at most ${left}s"
        timeout --signal=INT --kill-after=30 $left "$PY" -m pacabench run "$suite" --latency-mode $mode \
            --results-dir "$WORK/modes" --run-id "$STAMP-$mode" --no-progress --no-report
        rc=$?
        if [ $rc -eq 124 ] || [ $rc -eq 130 ]; then echo "$mode stopped by the time budget: rows kept"; rc=0; fi
        record "modes-$mode" $rc
        MODE_RUNS="$MODE_RUNS $(ls -d "$WORK"/modes/*/"$STAMP-$mode" 2>/dev/null | head -1)"
    done
}

report() {  # stage 6: the report of the suite's run, and the summary of both stages
    stage "6. report"
    if [ -n "${MODE_RUNS// /}" ]; then
        # shellcheck disable=SC2086 - one argument per run folder
        "$PY" benchmarks/gpu/summarize.py --modes $MODE_RUNS > "$WORK/modes-summary.md"
        record modes-summary $?
        cat "$WORK/modes-summary.md"
    fi
    if [ -n "$RUN" ] && [ -s "$RUN/rows.jsonl" ]; then
        echo "$(wc -l < "$RUN/rows.jsonl") rows in $RUN"
        local ref=swin_tiny_patch4_window7_224
        "$PY" -m pacabench report "$RUN" --format markdown --reference $ref -o "$WORK/report.md"
        record report-md $?
        "$PY" -m pacabench report "$RUN" --format html --reference $ref -o "$WORK/report.html" --plot "$WORK/plots"
        record report-html $?
        "$PY" -m pacabench report "$RUN" --format csv -o "$WORK/csv"
        record report-csv $?
        "$PY" benchmarks/gpu/summarize.py "$RUN" > "$WORK/suite-summary.md"
        record summary $?
        cat "$WORK/suite-summary.md"
    elif [ $RUN_SUITE = 1 ]; then
        record report 1
        echo "no rows to report"
    fi
    cat "$WORK/modes-summary.md" "$WORK/suite-summary.md" > "$WORK/summary.md" 2>/dev/null
}

pack() {
    stage "7. archive"
    local dest="$WORK/pack/gpu-$STAMP"
    mkdir -p "$dest"
    [ -n "${RUN:-}" ] && [ -d "$RUN" ] && cp -r "$RUN" "$dest/run"
    [ -d "$WORK/modes" ] && cp -r "$WORK/modes" "$dest/modes"
    for f in env plots csv report.md report.html summary.md pytest-cuda.txt pytest-cuda.xml; do
        [ -e "$WORK/$f" ] && cp -r "$WORK/$f" "$dest/"
    done
    for f in summary.md report.md pytest-cuda.txt; do [ -e "$WORK/$f" ] && cp "$WORK/$f" "$OUTDIR/"; done
    tar -C "$WORK/pack" -czf "$OUTDIR/gpu-results.tar.gz" "gpu-$STAMP"
    ls -la "$OUTDIR"
}

finish() {
    local failed
    failed=$( [ -f "$WORK/failed" ] && tr '\n' ' ' < "$WORK/failed")
    stage "done in $(elapsed)s; failed stages: ${failed:-none}"
    [ -z "$failed" ]
}

RUN=""
MODE_RUNS=""
{ main; pack; finish; } 2>&1 | tee "$OUTDIR/run.log"
status=${PIPESTATUS[0]}
rm -rf "$WORK"
exit "$status"
