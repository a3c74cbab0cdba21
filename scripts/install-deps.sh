#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian/Ubuntu machine: redis-server
# and redis-cli, nginx, chromium (the console's browser tests), and (for the real Kafka broker) a Java 17+ runtime and Maven when they are
# missing; `install-deps.sh protoc` installs protoc for `make proto`. Go
# itself is assumed (see README). Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

missing=()
if [ "${1:-}" = protoc ]; then
	command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
	# record.proto imports the well-known types (descriptor, struct,
	# timestamp), which Debian ships apart from protoc.
	[ -f /usr/include/google/protobuf/timestamp.proto ] || missing+=(libprotobuf-dev)
else
	command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
	command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
	# The load balancer of the scale tests, with the repository's deploy/nginx config.
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
	if ! "$here/kafka.sh" java-ok; then missing+=(openjdk-17-jre-headless); fi
	command -v mvn >/dev/null 2>&1 || missing+=(maven)
	# The browser the console's tests drive (chromedp).
	command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
		echo "install-deps: need ${missing[*]} but am not root and have no sudo; install them, then run make test again" >&2
		exit 1
	fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: need ${missing[*]}; no apt-get here, install them with your package manager" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
