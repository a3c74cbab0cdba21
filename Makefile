# Relay's two commands are `make dev` and `make test`; the rest are parts of them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PKGS := ./pkg/... ./services/ingest/... ./services/deliver/... ./services/archive/... ./services/count/... ./services/relay/...
TOOLS := $(CURDIR)/.tools
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/relayhq/relay/pkg/telemetry.Version=$(VERSION)

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

.PHONY: build
build: ## build every binary into bin/
	go build -ldflags '$(LDFLAGS)' -o bin/relay ./services/relay
	go build -ldflags '$(LDFLAGS)' -o bin/relay-ingest ./services/ingest/cmd/relay-ingest
	go build -ldflags '$(LDFLAGS)' -o bin/relay-deliver ./services/deliver/cmd/relay-deliver
	go build -ldflags '$(LDFLAGS)' -o bin/relay-archive ./services/archive/cmd/relay-archive
	go build -ldflags '$(LDFLAGS)' -o bin/relay-count ./services/count/cmd/relay-count

.PHONY: dev
dev: ## run the whole system in one process (embedded Kafka, Redis, S3)
	go build -ldflags '$(LDFLAGS)' -o bin/relay ./services/relay
	./bin/relay dev

.PHONY: deps
deps: ## install what the tests need (redis-server, chromium, Java 17+, Maven) when missing
	scripts/install-deps.sh

.PHONY: test
test: deps lint test-helm test-unit fuzz test-integration test-scale ## lint, the Helm chart, unit tests, bounded fuzzing, then everything against real Kafka, Redis and S3, then on several nodes

.PHONY: test-helm
test-helm: ## helm lint and kubeconform on the chart in deploy/helm/relay (both installed through the Go module proxy)
	scripts/helm.sh check

.PHONY: test-unit
test-unit: ## fast tests, no external services (-short)
	GOTEST_FLAGS='-short -count=1' scripts/gotest.sh $(PKGS)

.PHONY: test-integration
test-integration: ## every test, with a real Kafka broker, redis-server and S3 started by scripts/testenv.sh
	scripts/testenv.sh scripts/gotest.sh $(PKGS)

.PHONY: test-scale
test-scale: ## a broker of three killed under load (three-broker KRaft cluster), then the end-to-end suite on a three-master Redis Cluster
	RELAY_TEST_KAFKA_NODES=3 RELAY_TEST_SCALE=1 scripts/testenv.sh scripts/gotest.sh -run 'TestScaleBroker' ./services/relay/e2e/
	RELAY_TEST_REDIS_NODES=3 scripts/testenv.sh scripts/gotest.sh ./services/relay/e2e/ ./services/ingest/... ./services/deliver/... ./services/count/...

.PHONY: screenshots
screenshots: ## retake docs/console/*.png: the console's browser test, against real Kafka and Redis
	RELAY_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console scripts/testenv.sh scripts/gotest.sh -run 'TestConsoleInABrowser' ./services/relay/e2e/

.PHONY: bench
bench: build ## every benchmark scenario against real Kafka and Redis, with bare-HTTP baselines; report in bench-results/
	scripts/testenv.sh ./bin/relay bench --bin-dir bin --out bench-results/latest.md

.PHONY: smoke
smoke: ## check a running Relay end to end (RELAY_API, RELAY_ADMIN_TOKEN; start it with RELAY_RETRY_TIERS=1s,2s,4s)
	go build -ldflags '$(LDFLAGS)' -o bin/relay ./services/relay
	./bin/relay smoke

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 10000x, inputs) from its committed corpus
	scripts/fuzz.sh

.PHONY: lint
lint: ## gofmt check, go vet, every module tidy and building on its own, actionlint on the CI workflow
	@out=$$(gofmt -l pkg services); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(PKGS)
	scripts/tidy.sh --check
	@test -x $(TOOLS)/actionlint || GOBIN=$(TOOLS) go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
	$(TOOLS)/actionlint .github/workflows/ci.yml

.PHONY: proto
proto: ## regenerate pkg/relaypb from proto/ (protoc from Debian's protobuf-compiler)
	scripts/install-deps.sh protoc
	GOBIN=$(TOOLS) go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	PATH=$(TOOLS):$$PATH protoc -I proto --go_out=pkg --go_opt=module=github.com/relayhq/relay/pkg proto/relay/v1/record.proto

.PHONY: tidy
tidy: ## go mod tidy every module on its own
	scripts/tidy.sh

.PHONY: clean
clean: ## remove build outputs (keeps the Kafka jar cache)
	rm -rf bin
