#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install StreamRec into it.
# torch is pinned through .ci/constraints.txt so pip takes the CPU build, never a CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.streamrec-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ .ci/constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q -c .ci/constraints.txt -e ".[all,dev]"
  touch "$stamp"
fi
