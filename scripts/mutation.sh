#!/usr/bin/env bash
# On demand (not part of the test run; hours on 2 cores): mutate the code that decides what
# leaves the tools (fail-closed rules, write-back, bit depth and detection views, alignment's
# fallbacks, blending, the CLI's writers, the node's frame handler and codec, the bag tool,
# track recovery, fleet resume; [tool.mutmut] in pyproject.toml) and run the tests that cover
# each mutant. Writes docs/mutation.md: killed, survived, timeouts, and every survivor with
# its diff, marked equivalent where docs/mutation_equivalent.yaml says why.
#   bash scripts/mutation.sh                       # everything listed in pyproject.toml
#   bash scripts/mutation.sh "ciagan_ros.track_recovery*"   # one module (mutmut's names)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pip install --quiet "mutmut==3.8.1"
# mutmut runs the tests in a copy of the project (mutants/): point them at the shared data.
export CIAGAN_SHARED="${CIAGAN_SHARED:-$(cd .. && pwd)/shared}"
mutmut run "$@" || true   # survivors are results, not a failure of this script
python scripts/mutation_report.py --output docs/mutation.md
