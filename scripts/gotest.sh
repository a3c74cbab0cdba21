#!/usr/bin/env bash
# Runs go test over the given packages and ends with a summary of the
# results, so a CI log shows at a glance what passed, what failed and what
# was skipped. Exits non-zero when any test fails.
set -uo pipefail
log=$(mktemp "${TMPDIR:-/tmp}/relay-gotest.XXXXXX")
trap 'rm -f "$log"' EXIT
go test ${GOTEST_FLAGS:--count=1 -timeout 25m} "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo
echo "==================== go test summary ===================="
echo "packages ok:      $(grep -c '^ok ' "$log")"
echo "packages failed:  $(grep -cE '^FAIL[[:space:]]+[^[:space:]]' "$log")"
echo "tests failed:     $(grep -cE '^[[:space:]]*--- FAIL' "$log")"
echo "no test files:    $(grep -c 'no test files' "$log")"
grep -E '^([[:space:]]*--- FAIL|FAIL[[:space:]]|panic:)' "$log" || true
if [ "$status" -eq 0 ]; then echo "result:           PASS"; else echo "result:           FAIL (exit $status)"; fi
exit "$status"
