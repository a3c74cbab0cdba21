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
#   scripts/kafka.sh cluster-id              print a new cluster id
#   scripts/kafka.sh start-node DIR NODE PORT CPORT VOTERS CLUSTER_ID
#                                            one node (broker and controller) of a cluster of
#                                            several: NODE is its id, VOTERS every node's
#                                            controller (1@127.0.0.1:CPORT1,2@...); internal
#                                            topics are replicated to 3 with min.insync.replicas
#                                            2, as Relay's own topics are there. Restart a killed
#                                            node with the same arguments.
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
	local listeners="PLAINTEXT://127.0.0.1:$port" internal=PLAINTEXT tlsprops=""
	if [ -n "$tls" ]; then
		mkdir -p "$dir"
		cat "$tls/server-key.pem" "$tls/server.pem" >"$dir/keystore.pem"
		listeners="SSL://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport"
		internal=INTERNAL
		tlsprops="listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$dir/keystore.pem
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$tls/ca.pem
listener.name.ssl.ssl.client.auth=required"
	fi
	run_node "$dir" 1 "$listeners" "$internal" "$cport" "1@127.0.0.1:$cport" 1 "" "$tlsprops"
}

start_node() {
	local dir=$1 node=$2 port=$3 cport=$4 voters=$5 cluster=$6
	run_node "$dir" "$node" "PLAINTEXT://127.0.0.1:$port" PLAINTEXT "$cport" "$voters" 3 "$cluster" ""
}

# run_node DIR NODE LISTENERS INTERNAL CPORT VOTERS REPLICAS CLUSTER_ID EXTRA:
# write the node's properties, format DIR once, and exec the broker.
run_node() {
	local dir=$1 node=$2 listeners=$3 internal=$4 cport=$5 voters=$6 replicas=$7 cluster=$8 extra=$9
	install >/dev/null
	mkdir -p "$dir/data"
	local isr=1
	[ "$replicas" -ge 3 ] && isr=2
	cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=$internal
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,SSL:SSL
$extra
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$replicas
min.insync.replicas=$isr
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
	# Format the storage exactly once: a second format of a used directory is refused.
	if [ ! -f "$dir/data/meta.properties" ]; then
		[ -n "$cluster" ] || cluster=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)
		java -cp "$libs/*" kafka.tools.StorageTool format -t "$cluster" \
			-c "$dir/server.properties" >"$dir/format.log" 2>&1
	fi
	# The JVM settings Kafka's own start scripts use (kafka-server-start.sh's
	# heap, kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS): G1 with a 20ms
	# pause target on a fixed heap. A node of a cluster gets half the heap.
	local heap=1g
	[ "$replicas" -ge 3 ] && heap=512m
	exec java -Xms$heap -Xmx$heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
		-XX:MaxInlineLevel=15 -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
		-cp "$libs/*" kafka.Kafka "$dir/server.properties"
}

case "${1:-}" in
install) install ;;
start) shift; start "$@" ;;
start-node) shift; start_node "$@" ;;
cluster-id) install >/dev/null; java -cp "$libs/*" kafka.tools.StorageTool random-uuid ;;
java-ok) java_ok ;;
*) echo "usage: $0 install | start DIR PORT CONTROLLER_PORT [TLS_DIR INTERNAL_PORT] | cluster-id | start-node DIR NODE PORT CONTROLLER_PORT VOTERS CLUSTER_ID" >&2; exit 2 ;;
esac
