#!/usr/bin/env bash
# Sourced by run.sh and test.sh: create .venv and install the pinned packages, unless .venv was already
# installed from these exact pyproject.toml + constraints.txt (their checksum is kept in .venv after a
# successful install), so a second run skips pip and starts at once.
stamp=.venv/installed-from.cksum
wanted=$(cat pyproject.toml constraints.txt | cksum)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  echo "$wanted" > "$stamp"
fi
