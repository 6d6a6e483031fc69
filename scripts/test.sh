#!/usr/bin/env bash
# The test suite, from nothing: venv + pinned packages, then pytest (the fast default tier; -m slow for the
# slow tier, which .ci/run also runs; -m "" for both).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
# The report test renders the page in headless Chromium: Debian's package, installed once.
if ! command -v chromium >/dev/null 2>&1; then
  echo "test: installing chromium (apt) for the report's browser test" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "test: could not install chromium; the browser test will fail" >&2
fi
exec python -m pytest "$@"
