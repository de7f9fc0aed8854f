#!/usr/bin/env bash
# Set up (if needed) and run the main job on the bundled example: anonymize examples/ into
# out/demo/ (images plus summary.json). Extra arguments go to 'ciagan anonymize'.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec ciagan anonymize examples -o out/demo "$@"
