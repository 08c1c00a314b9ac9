#!/usr/bin/env bash
# run.sh: set up .venv if needed, then ask the bundled micro model about a photo (extra arguments go to `chat`).
set -euo pipefail
cd "$(dirname "$0")"
source tools/ensure_venv.sh  # pip runs only when the pins changed since the last install
export HF_HUB_OFFLINE=1
if [ "$#" -eq 0 ]; then
  set -- --image data/images/shapes.png --show-thinking "Where is the yellow square?"
fi
exec .venv/bin/python -m minglm4v chat "$@"
