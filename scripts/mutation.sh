#!/usr/bin/env bash
# On demand (not part of the test run): mutate the code that decides what leaves the tools and
# run the tests that cover each mutant ([tool.mutmut] in pyproject.toml lists the modules and
# the tests). Writes docs/mutation.md: killed, survived and equivalent per module and per
# fail-closed function, every survivor with its diff, marked equivalent where
# docs/mutation_equivalent.yaml says why.
#   bash scripts/mutation.sh              # the fail-closed functions (scripts/mutation_fail_closed.txt)
#   bash scripts/mutation.sh --all        # every function of the listed modules (a day on 2 cores)
#   bash scripts/mutation.sh "ciagan_ros.track_recovery*"   # mutmut's own name patterns
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pip install --quiet "mutmut==3.8.1"
# mutmut runs the tests in a copy of the project (mutants/): point them at the shared data.
export CIAGAN_SHARED="${CIAGAN_SHARED:-$(cd .. && pwd)/shared}"
if [ "$#" -eq 0 ]; then
    mapfile -t patterns < <(grep -v '^#' scripts/mutation_fail_closed.txt \
        | grep -v '# not measured' | sed '/^$/d; s/ *#.*//; s/$/__mutmut_*/')
    set -- "${patterns[@]}"
elif [ "$1" = "--all" ]; then
    shift
    set -- "*"
fi
# 1. mutmut writes the mutated copy (mutants/) and records which tests reach each function. The
#    name given matches no mutant, so it decides none (it then stops with "nothing matches"):
#    its forked children deadlock on torch's and ONNX Runtime's threads and crash in OpenCV's
#    video writer.
setup_log="$(mktemp)"
if ! mutmut run "ciagan_core.x_decide_none__mutmut_*" >"$setup_log" 2>&1; then
    grep -q "nothing matches" "$setup_log" || { tail -40 "$setup_log"; exit 1; }
fi
# 2. Decide the mutants, each one's tests in a fresh worker process (scripts/mutation_runner.py).
python scripts/mutation_runner.py "$@"
python scripts/mutation_report.py --output docs/mutation.md
