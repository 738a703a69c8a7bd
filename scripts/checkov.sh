#!/usr/bin/env bash
# Run checkov (pinned) over infra/. Creates its own venv, .venv-checkov, on first use:
# checkov's dependency tree is large and conflicts with the project's pins, so it never
# goes into .venv. Extra arguments are passed to checkov (e.g. `--compact`).
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
venv=.venv-checkov

find_python() {
  for cand in .venv/bin/python python3.12 python3 "$HOME/.pyenv/versions/3.12.1/bin/python3"; do
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  echo "checkov.sh: Python 3.12 is required" >&2
  return 1
}

stamp="$venv/.installed-$CHECKOV_VERSION"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  "$(find_python)" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "checkov==$CHECKOV_VERSION"
  touch "$stamp"
fi

# --download-external-modules false: no network at scan time; the config uses no modules.
exec "$venv/bin/checkov" --directory infra --framework terraform --quiet \
  --download-external-modules false --skip-download "$@"
