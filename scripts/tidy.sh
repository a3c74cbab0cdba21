#!/usr/bin/env bash
# Tidies every module on its own (GOWORK=off), in dependency order, so each
# builds without the workspace, as `go install` of a single service does.
#
#   scripts/tidy.sh           tidy go.mod and go.sum of every module
#   scripts/tidy.sh --check   fail if any needs tidying or does not build alone (make lint)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
modules=(pkg services/ingest services/deliver services/archive services/count services/relay)
if [ "${1:-}" = "--check" ]; then
	for m in "${modules[@]}"; do
		(cd "$root/$m" && GOWORK=off go mod tidy -diff >/dev/null) || { echo "tidy: $m needs scripts/tidy.sh" >&2; exit 1; }
		(cd "$root/$m" && GOWORK=off go build ./...) || { echo "tidy: $m does not build with GOWORK=off" >&2; exit 1; }
	done
	exit 0
fi
for m in "${modules[@]}"; do
	(cd "$root/$m" && GOWORK=off GOFLAGS=-mod=mod go mod tidy)
done
(cd "$root" && go work sync)
