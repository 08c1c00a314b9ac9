#!/usr/bin/env bash
# test.sh: set up .venv if needed, then run the whole suite (unit tests + notebooks via nbval) in one pytest run.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
