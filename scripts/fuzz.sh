#!/usr/bin/env bash
# The long fuzz run: every fuzz target (tests/test_fuzz.py and plugins/*/tests/test_fuzz.py) with
# many more examples than CI's smoke run, exploring (not derandomized). Usage:
#   scripts/fuzz.sh [EXAMPLES]        (default 5000 per target; about 5 minutes here)
# A failure prints the smallest input hypothesis found; CI's run is deterministic, so add that input
# to the test's seeds (or fix the parser) and it stays covered.
set -euo pipefail
cd "$(dirname "$0")/.."
export CPMS_FUZZ_EXAMPLES=${1:-5000} CPMS_FUZZ_EXPLORE=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider -W ignore::UserWarning \
  tests/test_fuzz.py plugins/*/tests/test_fuzz.py
