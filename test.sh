#!/usr/bin/env bash
# test.sh: set up .venv if needed, then run the whole suite (unit tests + notebooks via nbval) in one pytest run.
set -euo pipefail
cd "$(dirname "$0")"
source tools/ensure_venv.sh  # pip runs only when the pins changed since the last install
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
