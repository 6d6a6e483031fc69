#!/usr/bin/env bash
# The test suite, from nothing: venv + pinned packages, then pytest (fast tests; add -m slow for the rest).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec python -m pytest "$@"
