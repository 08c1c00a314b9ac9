#!/usr/bin/env bash
# run.sh: set up .venv if needed, then ask the bundled micro model about a photo (extra arguments go to `chat`).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
export HF_HUB_OFFLINE=1
if [ "$#" -eq 0 ]; then
  set -- --image data/images/shapes.png --show-thinking "What shape is in the picture?"
fi
exec .venv/bin/python -m minglm4v chat "$@"
