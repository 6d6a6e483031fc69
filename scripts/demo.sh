#!/usr/bin/env bash
# The main job end to end on embedded defaults: DuckDB file + Prefect's ephemeral server.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec nearmiss demo "$@"
