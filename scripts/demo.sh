#!/usr/bin/env bash
# The main job: set up the environment, then generate the demo world, train every model,
# print the leaderboard and write the report (default: ./streamrec-demo/report/report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/streamrec demo "$@"
