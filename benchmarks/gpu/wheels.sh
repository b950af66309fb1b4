#!/usr/bin/env bash
# Build, on this (CPU) machine, the wheels the lent GPU machine lacks, into .whl/ at the repo root
# (ignored by git; `run` carries it with `carry: [".whl"]`).
#
# The GPU machine (device kind nvidia-h200) has Python 3.12 with torch 2.11 (cu130), torchvision,
# typer, rich, pandas, pyyaml, matplotlib, pytest, tqdm, tabulate, portalocker and pillow, and no
# package registry. It lacks fvcore, iopath, yacs, termcolor, pycocotools and nvidia-ml-py (pynvml:
# the GPU telemetry and energy per image of every GPU row; pure Python). fvcore and iopath
# are published as source only: we build pure-Python wheels of them here. timm is carried too, at
# the version the CPU tests run, so both machines build the same models.
#
#   bash benchmarks/gpu/wheels.sh          # -> .whl/*.whl (a few MiB)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
DEST=.whl
rm -rf "$DEST"
mkdir -p "$DEST"
PIP=("$PY" -m pip --disable-pip-version-check -q)

# source-only packages: build pure wheels (py3-none-any), no dependencies pulled in
"${PIP[@]}" wheel --no-deps -w "$DEST" "fvcore==0.1.5.post20221221" "iopath==0.1.10"
# pure-Python wheels that exist on the index
"${PIP[@]}" download --no-deps --only-binary=:all: -d "$DEST" "yacs==0.1.8" "termcolor==2.5.0" "timm==1.0.31" \
    "nvidia-ml-py==13.615.71"
# compiled: the CPython 3.12 manylinux wheel
"${PIP[@]}" download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$DEST" "pycocotools==2.0.11"

for w in "$DEST"/*.whl; do
    case "$(basename "$w")" in
        *none-any.whl|*cp312*manylinux*x86_64*.whl) ;;
        *) echo "wheels.sh: unexpected wheel $(basename "$w") (not pure Python, not cp312 x86_64)" >&2; exit 1 ;;
    esac
done
ls -1 "$DEST"
du -sh "$DEST"
