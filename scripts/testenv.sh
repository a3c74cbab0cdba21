#!/usr/bin/env bash
# Runs a command with a real Kafka broker, a real Redis server and an
# S3-compatible server on loopback, and stops exactly what it started when the
# command ends (also on failure or Ctrl-C).
#
#   scripts/testenv.sh go test ./...
#
# Exports RELAY_TEST_KAFKA_BROKERS, RELAY_TEST_KAFKA_KIND (kafka, external or
# kfake), RELAY_TEST_REDIS_ADDR, RELAY_TEST_S3_ENDPOINT, RELAY_TEST_BIN (the
# relay binary) and RELAY_TEST_SCRIPTS, and the PIDs of the broker and Redis
# it started (RELAY_TEST_KAFKA_PID, RELAY_TEST_REDIS_PID) for the benchmarks.
# A variable already set (a compose Redpanda, say) is used as is.
#
# RELAY_TEST_KAFKA_NODES=3 starts a three-node KRaft cluster instead of one
# broker (topics replicated to 3, min.insync.replicas=2); it exports every
# node's PID in RELAY_TEST_KAFKA_PIDS and, in RELAY_TEST_KAFKA_NODE_<N>, the
# arguments that restart node N (scripts/kafka.sh start-node ...).
# RELAY_TEST_REDIS_NODES=3 starts a Redis Cluster of three masters, and
# RELAY_TEST_REDIS_ADDR lists them all.
#
# Kafka is Apache Kafka in KRaft mode run from Maven Central jars
# (scripts/kafka.sh). Outside CI, without Java 17+ or Maven, it falls back to
# franz-go's kfake as a separate process and says so loudly; with CI=true a
# real broker and a real redis-server are required.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ci=${CI:-false}
run=$(mktemp -d "${TMPDIR:-/tmp}/relay-testenv.XXXXXX")
pids=()

cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "testenv: $*" >&2; }
die() { say "$*"; exit 1; }

# The relay binary provides free ports, the stand-ins and the broker probe.
relay="$root/bin/relay"
(cd "$root" && go build -o "$relay" ./services/relay)
export RELAY_TEST_BIN="$relay" RELAY_TEST_SCRIPTS="$here"

# wait_for_line FILE PATTERN SECONDS PID: wait until FILE has a line matching PATTERN.
wait_for_line() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		kill -0 "$4" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# redis_ping PORT: true when a Redis on 127.0.0.1:PORT answers PING (no redis-cli needed).
redis_ping() (
	exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
	printf 'PING\r\n' >&3
	read -r -t 1 reply <&3 && [ "${reply%$'\r'}" = "+PONG" ]
)

# --- Redis -------------------------------------------------------------------
# start_redis PORT DIR [ARGS...]: one redis-server, waited for.
start_redis() {
	local port=$1 dir=$2
	shift 2
	mkdir -p "$dir"
	redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --appendonly yes \
		--maxmemory-policy noeviction --save "" --rdbcompression no --daemonize no "$@" >"$dir/redis.log" 2>&1 &
	pids+=($!)
	local ok=""
	for _ in $(seq 1 100); do
		if redis_ping "$port" 2>/dev/null; then ok=1; break; fi
		sleep 0.1
	done
	[ -n "$ok" ] || { cat "$dir/redis.log" >&2; die "redis-server did not answer on port $port"; }
}

redis_nodes=${RELAY_TEST_REDIS_NODES:-1}
if [ -z "${RELAY_TEST_REDIS_ADDR:-}" ]; then
	command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || "$here/install-deps.sh"
	command -v redis-server >/dev/null 2>&1 || die "redis-server is missing and could not be installed"
	redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
	if [ "$redis_nodes" -eq 1 ]; then
		port=$("$relay" free-port)
		start_redis "$port" "$run/redis"
		export RELAY_TEST_REDIS_ADDR="127.0.0.1:$port" RELAY_TEST_REDIS_PID="${pids[-1]}"
		say "Redis $redis_version (redis-server, appendonly yes, noeviction, rdbcompression no) at $RELAY_TEST_REDIS_ADDR"
	else
		addrs=()
		for n in $(seq 1 "$redis_nodes"); do
			port=$("$relay" free-port)
			start_redis "$port" "$run/redis-$n" --cluster-enabled yes --cluster-config-file "$run/redis-$n/nodes.conf" --cluster-node-timeout 5000
			addrs+=("127.0.0.1:$port")
		done
		redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$run/redis-cluster.log" 2>&1 ||
			{ cat "$run/redis-cluster.log" >&2; die "redis-cli --cluster create failed"; }
		ok=""
		for _ in $(seq 1 100); do
			if redis-cli -p "${addrs[0]##*:}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then ok=1; break; fi
			sleep 0.1
		done
		[ -n "$ok" ] || die "the Redis Cluster did not reach cluster_state:ok"
		RELAY_TEST_REDIS_ADDR=$(IFS=,; echo "${addrs[*]}")
		export RELAY_TEST_REDIS_ADDR
		say "Redis Cluster $redis_version of $redis_nodes masters at $RELAY_TEST_REDIS_ADDR"
	fi
else
	say "Redis at $RELAY_TEST_REDIS_ADDR (given)"
fi

# start_kafka_cluster ATTEMPT: start RELAY_TEST_KAFKA_NODES nodes of one
# KRaft cluster on free ports; sets port (the brokers), kpids, and
# RELAY_TEST_KAFKA_NODE_<N> (the arguments that restart node N).
start_kafka_cluster() {
	local attempt=$1 n cluster args
	cluster=$("$here/kafka.sh" cluster-id)
	local ports=() cports=() voters=() brokers=()
	kpids=()
	for n in $(seq 1 "$kafka_nodes"); do
		ports+=("$("$relay" free-port)")
		cports+=("$("$relay" free-port)")
		voters+=("$n@127.0.0.1:${cports[-1]}")
	done
	voters=$(IFS=,; echo "${voters[*]}")
	for n in $(seq 1 "$kafka_nodes"); do
		args="$run/kafka-$attempt-$n $n ${ports[$((n - 1))]} ${cports[$((n - 1))]} $voters $cluster"
		# shellcheck disable=SC2086 # the arguments are words without spaces
		"$here/kafka.sh" start-node $args >"$run/kafka-$attempt-$n.log" 2>&1 &
		pids+=($!)
		kpids+=($!)
		brokers+=("127.0.0.1:${ports[$((n - 1))]}")
		export "RELAY_TEST_KAFKA_NODE_$n=$args"
	done
	port=$(IFS=,; echo "${brokers[*]}")
}

# --- Kafka -------------------------------------------------------------------
if [ -z "${RELAY_TEST_KAFKA_BROKERS:-}" ]; then
	if [ "$ci" = "true" ]; then "$here/install-deps.sh"; fi
	port=$("$relay" free-port)
	kafka_nodes=${RELAY_TEST_KAFKA_NODES:-1}
	if "$here/kafka.sh" java-ok && command -v mvn >/dev/null 2>&1 && [ "$kafka_nodes" -gt 1 ]; then
		"$here/kafka.sh" install >/dev/null
		# A cluster that does not form within a minute (a port taken between
		# free-port and the bind) is stopped, its logs shown, and started
		# again on new ports, once.
		for attempt in 1 2; do
			start_kafka_cluster "$attempt"
			if "$relay" broker-version --brokers "$port" --nodes "$kafka_nodes" --wait 60s >/dev/null; then
				break
			fi
			for n in $(seq 1 "$kafka_nodes"); do
				say "--- kafka node $n, attempt $attempt ---"
				tail -n 20 "$run/kafka-$attempt-$n.log" >&2 || true
			done
			kill "${kpids[@]}" 2>/dev/null || true
			wait "${kpids[@]}" 2>/dev/null || true
			[ "$attempt" -eq 2 ] && die "the Kafka cluster did not form"
		done
		RELAY_TEST_KAFKA_PIDS=$(IFS=,; echo "${kpids[*]}")
		export RELAY_TEST_KAFKA_KIND=kafka RELAY_TEST_KAFKA_PID="${kpids[0]}" RELAY_TEST_KAFKA_PIDS
		run_kafka_log="$run/kafka-$attempt-1.log"
	elif "$here/kafka.sh" java-ok && command -v mvn >/dev/null 2>&1; then
		"$here/kafka.sh" install >/dev/null
		cport=$("$relay" free-port)
		"$here/kafka.sh" start "$run/kafka" "$port" "$cport" >"$run/kafka.log" 2>&1 &
		pids+=($!)
		export RELAY_TEST_KAFKA_KIND=kafka RELAY_TEST_KAFKA_PID=$!
	elif [ "$ci" = "true" ]; then
		die "CI=true requires a real Kafka broker: Java 17+ and Maven are needed (scripts/install-deps.sh)"
	else
		say "##################################################################"
		say "WARNING: no Java 17+/Maven here: integration tests run against the"
		say "embedded kfake broker, NOT a real Kafka. CI uses a real broker."
		say "##################################################################"
		"$relay" standin kafka --addr "127.0.0.1:$port" >"$run/kafka.log" 2>&1 &
		pids+=($!)
		export RELAY_TEST_KAFKA_KIND=kfake
	fi
	case $port in
	*,*) export RELAY_TEST_KAFKA_BROKERS="$port" ;;
	*) export RELAY_TEST_KAFKA_BROKERS="127.0.0.1:$port" ;;
	esac
	if ! version=$("$relay" broker-version --brokers "$RELAY_TEST_KAFKA_BROKERS" --nodes "$kafka_nodes" --wait 120s); then
		tail -n 50 "${run_kafka_log:-$run/kafka.log}" >&2 || true
		die "the Kafka broker did not come up"
	fi
	say "Kafka $version ($RELAY_TEST_KAFKA_KIND, $kafka_nodes node(s)) at $RELAY_TEST_KAFKA_BROKERS"
	export RELAY_TEST_KAFKA_VERSION="$version"
else
	export RELAY_TEST_KAFKA_KIND=${RELAY_TEST_KAFKA_KIND:-external}
	version=$("$relay" broker-version --brokers "$RELAY_TEST_KAFKA_BROKERS" --wait 60s) || die "no broker at $RELAY_TEST_KAFKA_BROKERS"
	say "Kafka broker $version (given) at $RELAY_TEST_KAFKA_BROKERS"
fi

# --- S3 ----------------------------------------------------------------------
if [ -z "${RELAY_TEST_S3_ENDPOINT:-}" ]; then
	"$relay" standin s3 --addr 127.0.0.1:0 >"$run/s3.log" 2>&1 &
	pids+=($!)
	wait_for_line "$run/s3.log" '^ready ' 20 "${pids[-1]}" || { cat "$run/s3.log" >&2; die "the S3 stand-in did not start"; }
	export RELAY_TEST_S3_ENDPOINT=$(sed -n 's/^ready //p' "$run/s3.log")
	say "S3 (gofakes3 process) at $RELAY_TEST_S3_ENDPOINT"
else
	say "S3 at $RELAY_TEST_S3_ENDPOINT (given)"
fi

set +e
"$@"
status=$?
set -e
exit $status
