#!/usr/bin/env bash
# Creates (or refreshes) the project's isolated environment in .venv/ and installs wps_sam into it.
#
# Idempotent: when nothing it depends on changed since the last successful run it returns in
# about a second. Environment variables:
#   PYTHON           interpreter used to create the venv (default: python3.11, else python3)
#   WPS_SAM_VENV     where the venv lives (default: .venv in the repository root)
#   WPS_SAM_FORCE=1  reinstall even if the stamp says the environment is up to date
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${WPS_SAM_VENV:-$ROOT/.venv}"
if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
# torch / torchvision pinned together: the CUDA builds of these two run torchvision.ops on CPU too
# (the CPU-only torch wheel has no torchvision whose compiled ops load).
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)

STAMP_FILE="$VENV/.wps_sam_setup_stamp"
stamp() {
    cat setup.cfg pyproject.toml tools/setup_env.sh tools/install_detectron2.py | sha256sum | cut -d' ' -f1
}
WANT="$(stamp)"
if [[ "${WPS_SAM_FORCE:-0}" != "1" && -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$WANT" ]] \
    && "$VENV/bin/python" -c "import wps_sam" >/dev/null 2>&1; then
    echo "[setup] environment $VENV is up to date"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[setup] creating virtual environment $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
pip_q() { "${PIP[@]}" install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

if "$VENV/bin/python" -c "import torch, torchvision.ops" >/dev/null 2>&1; then
    echo "[setup] torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') already present"
else
    echo "[setup] installing ${TORCH_PINS[*]} (about a minute from a warm package cache)"
    pip_q "${TORCH_PINS[@]}"
fi

echo "[setup] installing detectron2 (kept as is if it already imports)"
"$VENV/bin/python" tools/install_detectron2.py

echo "[setup] installing wps_sam (editable) and its dependencies"
pip_q -e ".[dev]"

"$VENV/bin/python" -c "import wps_sam, detectron2, segment_anything; print('[setup] ok: wps_sam', \
wps_sam.__version__, '| detectron2', detectron2.__version__)"
echo "$WANT" >"$STAMP_FILE"
echo "[setup] done in $(($(date +%s) - start)) s"
