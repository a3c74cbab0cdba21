#!/usr/bin/env bash
# Runs a real Apache Kafka broker (single combined broker+controller, KRaft)
# from the official jars on Maven Central, with the machine's Java 17+.
#
#   scripts/kafka.sh install                 resolve the jars once into .cache/kafka/<version>/libs; print that dir
#   scripts/kafka.sh start DIR PORT CPORT [TLSDIR IPORT]
#                                            format DIR once, then run the broker in the foreground
#                                            (PORT for clients, CPORT for the controller). With
#                                            TLSDIR (ca.pem, server.pem, server-key.pem in PKCS#8),
#                                            PORT speaks only mutual TLS and the broker talks to
#                                            itself in plain text on IPORT.
#
# The test harness (scripts/testenv.sh) and the fault-injection tests use it;
# start execs java, so the caller's PID is the broker's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
libs="$root/.cache/kafka/$version/libs"

java_ok() {
	command -v java >/dev/null 2>&1 || return 1
	local v
	v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
	[ -n "$v" ] && [ "$v" -ge 17 ]
}

install() {
	if [ -f "$libs/.complete" ]; then
		echo "$libs"
		return
	fi
	command -v mvn >/dev/null 2>&1 || { echo "kafka.sh: mvn not found" >&2; exit 1; }
	java_ok || { echo "kafka.sh: Java 17 or newer is required" >&2; exit 1; }
	echo "kafka.sh: resolving Apache Kafka $version from Maven Central (once)..." >&2
	rm -rf "$libs"
	mkdir -p "$libs"
	local log="$root/.cache/kafka/mvn.log"
	if ! mvn -B -q -f "$here/kafka/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$libs" >"$log" 2>&1; then
		cat "$log" >&2
		echo "kafka.sh: resolving the Kafka jars failed (is Maven Central reachable?)" >&2
		exit 1
	fi
	touch "$libs/.complete"
	echo "$libs"
}

start() {
	local dir=$1 port=$2 cport=$3 tls=${4:-} iport=${5:-}
	install >/dev/null
	mkdir -p "$dir/data"
	local listeners="PLAINTEXT://127.0.0.1:$port" internal=PLAINTEXT tlsprops=""
	if [ -n "$tls" ]; then
		cat "$tls/server-key.pem" "$tls/server.pem" >"$dir/keystore.pem"
		listeners="SSL://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport"
		internal=INTERNAL
		tlsprops="listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$dir/keystore.pem
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$tls/ca.pem
listener.name.ssl.ssl.client.auth=required"
	fi
	cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=$internal
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,SSL:SSL
$tlsprops
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
	# Format the storage exactly once: a second format of a used directory is refused.
	if [ ! -f "$dir/data/meta.properties" ]; then
		java -cp "$libs/*" kafka.tools.StorageTool format \
			-t "$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)" \
			-c "$dir/server.properties" >"$dir/format.log" 2>&1
	fi
	# The JVM settings Kafka's own start scripts use (kafka-server-start.sh's
	# heap, kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS). With G1's default
	# 200ms pause target and a heap growing from 256m, the broker paused 37-40
	# times in 45s at 5,000 events/s, up to 34ms; with these, 18-20 times, up to
	# 21ms (docs/BENCHMARKS.md).
	exec java -Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
		-XX:MaxInlineLevel=15 -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
		-cp "$libs/*" kafka.Kafka "$dir/server.properties"
}

case "${1:-}" in
install) install ;;
start) shift; start "$@" ;;
java-ok) java_ok ;;
*) echo "usage: $0 install | start DIR PORT CONTROLLER_PORT [TLS_DIR INTERNAL_PORT]" >&2; exit 2 ;;
esac
