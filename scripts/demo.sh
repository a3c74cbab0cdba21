#!/usr/bin/env bash
# The README's walkthrough, unattended, against a running Relay (make dev,
# started with RELAY_RETRY_TIERS=1s,2s,4s so retries take seconds):
#
#   flaky endpoint -> fails once -> delivered on attempt 2
#   failing endpoint -> retried through every tier -> dead -> listed in the DLQ
#   endpoint fixed -> DLQ redrive -> delivered exactly once
#   single-event replay -> skips what is delivered
#   a filter and a rate limit -> only matching orders, paced
#
# Needs RELAY_API and RELAY_ADMIN_TOKEN (as printed by relay dev) and the
# demo receiver's URL in RELAY_RECEIVER_URL (default http://127.0.0.1:8081).
# Exits non-zero as soon as anything differs from the README.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
relay=${RELAY_BIN:-$root/bin/relay}
receiver=${RELAY_RECEIVER_URL:-http://127.0.0.1:8081}
: "${RELAY_API:?set RELAY_API (printed by relay dev)}" "${RELAY_ADMIN_TOKEN:?set RELAY_ADMIN_TOKEN (printed by relay dev)}"
export RELAY_API RELAY_ADMIN_TOKEN

step() { printf '\n== %s\n' "$*"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
# wait_for SECONDS DESCRIPTION COMMAND...: run COMMAND until it succeeds.
wait_for() {
	local secs=$1 what=$2
	shift 2
	for ((i = 0; i < secs * 4; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.25
	done
	fail "timed out after ${secs}s waiting for $what"
}
status_of() { # status_of SOURCE EVENT SUB -> "status attempts"
	"$relay" deliveries --source "$1" "$2" --format '{{range .data}}{{if eq .subscription_id "'"$3"'"}}{{.status}} {{.attempts}}{{end}}{{end}}'
}
is_status() { [ "$(status_of "$1" "$2" "$3")" = "$4" ]; }

step "1. a source (relay scheme) and two subscriptions: one flaky, one failing"
read -r SRC SECRET < <("$relay" sources create --name demo --scheme relay --format '{{.id}} {{.secret}}')
echo "source $SRC"
FLAKY=$("$relay" subs create --source "$SRC" --url "$receiver/?mode=flaky" --events '*' --format '{{.id}}')
FAILING=$("$relay" subs create --source "$SRC" --url "$receiver/?mode=fail" --events 'payment.*' --format '{{.id}}')
echo "flaky subscription $FLAKY, failing subscription $FAILING"

step "2. send a signed payment.succeeded event"
EVT=$("$relay" send --source "$SRC" --secret "$SECRET" --type payment.succeeded --format '{{.event_id}}')
echo "event $EVT"

step "3. the flaky endpoint fails once, then gets it on attempt 2"
wait_for 30 "the flaky delivery" is_status "$SRC" "$EVT" "$FLAKY" "delivered 2"
"$relay" deliveries --source "$SRC" "$EVT"

step "4. the failing endpoint is retried through every tier, then parked in the DLQ"
wait_for 60 "the failing delivery to go dead" is_status "$SRC" "$EVT" "$FAILING" "dead 4"
"$relay" dlq ls --subscription "$FAILING"
[ "$("$relay" dlq ls --subscription "$FAILING" --format '{{len .data}}')" = 1 ] || fail "the dead delivery is not listed in the DLQ"

step "5. fix the endpoint, redrive the DLQ: delivered"
"$relay" subs patch --source "$SRC" "$FAILING" --url "$receiver/?mode=ok" >/dev/null
sleep 3 # deliver caches subscriptions for RELAY_SUBSCRIPTION_CACHE_TTL (2s)
"$relay" dlq redrive --subscription "$FAILING"
wait_for 30 "the redriven delivery" is_status "$SRC" "$EVT" "$FAILING" "delivered 5"
[ "$("$relay" dlq ls --subscription "$FAILING" --format '{{len .data}}')" = 0 ] || fail "the DLQ still lists the redriven delivery"
"$relay" deliveries --source "$SRC" "$EVT"

step "6. replay the event: both subscriptions are delivered, so nothing is queued"
out=$("$relay" replay --source "$SRC" "$EVT" --format '{{len .queued}} {{len .skipped}}')
[ "$out" = "0 2" ] || fail "replay queued/skipped = $out, want 0 2"
echo "queued 0, skipped 2 (already delivered)"

step "7. a duplicate is answered 200 and never delivered twice"
"$relay" send --source "$SRC" --secret "$SECRET" --type invoice.paid --idempotency-key demo-1 >/dev/null
dup=$("$relay" send --source "$SRC" --secret "$SECRET" --type invoice.paid --idempotency-key demo-1 --format '{{.duplicate}}')
[ "$dup" = true ] || fail "the second send with the same idempotency key was not a duplicate"
echo "duplicate: true"

step "8. counts per day and type"
wait_for 30 "the counts" bash -c '[ "$("$0" metrics --source "$1" --format "{{len .data}}")" = 2 ]' "$relay" "$SRC"
"$relay" metrics --source "$SRC"

step "9. a filter and a rate limit: only orders over 100, at most 2 a second"
BIG=$("$relay" subs create --source "$SRC" --url "$receiver/?mode=ok" --events 'order.*' \
	--filter 'data.total > 100' --rate 2/s --format '{{.id}}')
echo "filtered, rate-limited subscription $BIG"
sleep 3 # deliver's subscription cache
ORDERS=()
for total in 50 150 250 350; do
	ORDERS+=("$("$relay" send --source "$SRC" --secret "$SECRET" --type order.created \
		--data '{"type":"order.created","total":'"$total"'}' --format '{{.event_id}}')")
done
for evt in "${ORDERS[@]:1}"; do
	wait_for 30 "order $evt to be delivered" is_status "$SRC" "$evt" "$BIG" "delivered 1"
done
is_status "$SRC" "${ORDERS[0]}" "$BIG" "filtered 0" || fail "the order of 50 was not filtered: $(status_of "$SRC" "${ORDERS[0]}" "$BIG")"
"$relay" deliveries --source "$SRC" "${ORDERS[0]}"

echo
echo "demo: OK"
