#!/usr/bin/env bash
# Tidies every module on its own (GOWORK=off), in dependency order, so each
# builds without the workspace, as the Dockerfiles and `go install` do.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
for m in pkg services/ingest services/deliver services/archive services/count services/relay; do
	(cd "$root/$m" && GOWORK=off GOFLAGS=-mod=mod go mod tidy)
done
(cd "$root" && go work sync)
