// Package deploycheck holds the tests of deploy/ and docker-compose.yml:
// the compose file loads with the Compose specification's own loader, every
// service has a health check and the ports the README documents, every
// image is built from a Dockerfile that exists, the Prometheus rules and
// Grafana dashboard query metrics Relay exports, and the CI workflow passes
// actionlint.
package deploycheck

// MetricNames are the metric names Relay's services register (besides
// kprom's relay_kafka_* and the Go runtime's). The alert rules and the
// dashboard may only query these; the end-to-end metrics test checks that
// the services really export every one.
var MetricNames = []string{
	"relay_http_requests_total", "relay_http_request_duration_seconds", "relay_ingest_verification_failures_total",
	"relay_ingest_events_total", "relay_ingest_dedup_fail_open_total", "relay_ingest_produce_duration_seconds",
	"relay_ingest_produce_failures_total", "relay_ingest_event_store_failures_total", "relay_ingest_body_bytes", "relay_ingest_busy_total",
	"relay_ingest_inflight_requests",
	"relay_deliver_attempts_total", "relay_deliver_attempt_duration_seconds", "relay_deliver_outcomes_total",
	"relay_deliver_dead_total", "relay_deliver_lease_waits_total", "relay_deliver_paused", "relay_deliver_queued",
	"relay_deliver_backlog_waiting", "relay_deliver_produce_refused_total", "relay_deliver_inflight_bytes",
	"relay_deliver_filtered_total", "relay_deliver_filter_errors_total", "relay_deliver_throttled_total",
	"relay_deliver_circuit_transitions_total", "relay_deliver_subscriptions_auto_disabled_total",
	"relay_consumer_lag", "relay_dlq_depth", "relay_lag_scrape_success", "relay_alerts_total",
	"relay_archive_uploads_total", "relay_archive_events_total", "relay_archive_batch_flush_seconds", "relay_archive_s3_healthy",
	"relay_count_events_total", "relay_count_redis_failures_total",
}
