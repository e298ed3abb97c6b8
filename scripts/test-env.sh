#!/usr/bin/env bash
# Installs the system tools some tests drive, idempotently: tmux (the live monitor test),
# Debian's chromium (the browser test launches /usr/bin/chromium) and the Python playwright
# package WITHOUT its own browser download (`playwright install` fails on closed networks).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1 || ! command -v tmux >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium tmux >/dev/null
fi
if ! python -c "import playwright" >/dev/null 2>&1; then
    python -m pip install -q playwright
fi
chromium --version
python -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
