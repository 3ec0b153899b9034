#!/usr/bin/env bash
# The long schemathesis run: the JSON API against its OpenAPI document (tests/test_api_schemathesis.py),
# every check, every phase (examples, coverage, fuzzing, stateful) as every role of the demo and without
# a session, with many more examples than CI's bounded run, exploring (a new random seed each time).
# Usage:
#   scripts/schemathesis.sh [EXAMPLES]     (default 100 per operation and phase; about 15 minutes here)
# Set CPMS_TEST_DATABASE_URL (and CPMS_TEST_REDIS_URL) to run it on PostgreSQL, as for the test suite.
# A failure prints schemathesis's report (with a curl command that reproduces it) for the role it hit;
# the whole output of each role is kept in pytest's temporary folder (schemathesis-ROLE.out).
set -euo pipefail
cd "$(dirname "$0")/.."
export CPMS_SCHEMATHESIS_EXAMPLES=${1:-100} CPMS_SCHEMATHESIS_OTHER_EXAMPLES=${1:-100}
export CPMS_SCHEMATHESIS_ALL_PHASES=1 CPMS_SCHEMATHESIS_EXPLORE=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 0 -s tests/test_api_schemathesis.py
