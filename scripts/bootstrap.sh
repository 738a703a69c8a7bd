#!/usr/bin/env bash
# Create .venv with Python 3.12 and install the project from the lock file.
# Idempotent: re-running after a pull only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  # .python-version makes pyenv's python3 resolve to 3.12 inside the checkout.
  for cand in python3.12 python3 "$HOME/.pyenv/versions/3.12.1/bin/python3"; do
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  echo "bootstrap: Python 3.12 is required (resonate-sdk 0.8 needs >= 3.12); install it or use pyenv" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  "$(find_python)" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c requirements.lock -e '.[dev]'
  touch "$stamp"
fi
