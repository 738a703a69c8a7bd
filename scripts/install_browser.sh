#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/browser/), if it is missing,
# and print its version. Idempotent; needs root (CI runs as root, with no stdin).
# Playwright drives this binary (executable_path=/usr/bin/chromium): it never
# downloads a browser of its own. Exits non-zero only if apt-get or the installed binary fails.
set -euo pipefail
CHROMIUM=${HITL_CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: $CHROMIUM is missing and apt-get is not available; browser tests will be skipped" >&2
    exit 0
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      echo "install_browser: $CHROMIUM is missing and installing it needs root; browser tests will be skipped" >&2
      exit 0
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "install_browser: installing chromium with apt-get" >&2
  $sudo apt-get update -qq </dev/null
  $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core </dev/null >/dev/null
fi

# (Debian's launcher script may warn about /dev/shm on stderr; the version is what matters.)
"$CHROMIUM" --version 2>/dev/null || { echo "install_browser: $CHROMIUM does not run" >&2; exit 1; }
