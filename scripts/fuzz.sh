#!/usr/bin/env bash
# Runs every Go fuzz target of the repository for a bounded budget each
# (FUZZTIME, default 10000x: ten thousand inputs). The committed corpora in
# testdata/fuzz seed them.
#
# The default is a count, not a duration: with a duration, Go before 1.27
# can fail a target with a bare "context deadline exceeded" when a worker is
# mid-input at the deadline on a busy machine (golang/go#75804), with no
# failing input found. FUZZTIME=2m (or 1000000x) explores further.
#
#   scripts/fuzz.sh          run each target for FUZZTIME
#   scripts/fuzz.sh --save   also copy what the runs found interesting into testdata/fuzz
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fuzztime=${FUZZTIME:-10000x}
save=${1:-}
cache=$(go env GOCACHE)/fuzz
failed=0
for mod in pkg services/ingest services/deliver services/archive services/count services/relay; do
	cd "$root/$mod"
	for pkg in $(go list ./...); do
		targets=$(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
		for t in $targets; do
			echo "fuzz: $pkg $t ($fuzztime)"
			if ! go test "$pkg" -run '^$' -fuzz "^$t\$" -fuzztime "$fuzztime" >/tmp/relay-fuzz.log 2>&1; then
				cat /tmp/relay-fuzz.log
				echo "fuzz: $t FAILED (a reproducer is in testdata/fuzz/$t of its package)"
				failed=1
			fi
			if [ "$save" = "--save" ] && [ -d "$cache/$pkg/$t" ]; then
				dir=$(go list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$t
				mkdir -p "$dir"
				cp -n "$cache/$pkg/$t"/* "$dir"/ 2>/dev/null || true
			fi
		done
	done
done
exit $failed
