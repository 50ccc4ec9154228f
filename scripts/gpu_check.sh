#!/usr/bin/env bash
# One-GPU check of kanvision's fast paths (GroupRational kernel, KAT vs ViT, KAN CNNs): < 9 minutes on one H200
# (plus the setup of .venv).
# Writes benchmarks/results/gpu-<date>.json (and a copy into the folder given with --copy-to) after every section,
# so a cut-short run keeps what it measured.
#   bash scripts/gpu_check.sh [--copy-to DIR]       # the full check, on a CUDA machine
#   bash scripts/gpu_check.sh --device cpu --quick  # every code path on tiny shapes, any machine
# Other arguments go to `python -m benchmarks.gpu_check` (see its --help).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
if ! { [ -x "$PY" ] && "$PY" -c "import torch" 2>/dev/null; }; then
    if python3 -c "import torch, timm, triton" 2>/dev/null; then
        # A GPU image with its own torch/triton/timm (often itself a venv): make .venv see that environment
        # through a .pth file, so its CUDA builds are used, and install kanvision without touching the network.
        if python3 -m venv --system-site-packages --without-pip .venv; then
            site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
            python3 -c "import sysconfig as s; print('\n'.join(sorted({s.get_paths()['purelib'], s.get_paths()['platlib']})))" \
                >"$site/_gpu_check_parent_env.pth"
            "$PY" -m pip install -q --no-deps --no-build-isolation -e . \
                || echo "gpu_check.sh: editable install failed; running from the source tree" >&2
        else
            echo "gpu_check.sh: could not create .venv; using python3" >&2
            PY=python3
        fi
    else
        # A bare machine: the Makefile's recipe (needs the package index).
        python3 -m venv .venv && "$PY" -m pip install -q --upgrade pip && "$PY" -m pip install -q -e ".[dev]" || exit 1
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec timeout -k 30 --signal=INT 510 "$PY" -m benchmarks.gpu_check "$@"
