# Ferry's Makefile. `make help` lists the targets.
#
# `make test` is the one command that checks everything, as root, from a fresh
# machine: it installs what is missing (Debian packages, pinned Go tools), then
# runs formatting, vet, lint, every test under the race detector (NAT lab and
# interop tests included), every fuzz target for FUZZTIME, and every benchmark
# once.

SHELL          := /usr/bin/env bash
GO             ?= go
GOBIN          := $(shell $(GO) env GOPATH)/bin
GOLANGCI_LINT  := $(GOBIN)/golangci-lint
FUZZTIME       ?= 20000x
TEST_TIMEOUT   ?= 45m
PKGS           ?= ./...

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every package and the binaries into ./bin.
	$(GO) build ./...
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/...

.PHONY: deps
deps: ## Install what the tests need when missing (Debian packages as root, pinned Go tools).
	@bash scripts/deps.sh

.PHONY: test
test: deps fmt-check vet lint test-race fuzz bench-once ## Everything, as CI runs it (root; installs what is missing).

.PHONY: test-unit
test-unit: ## Unit tests only, no root needed (lab and interop tests skip loudly).
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

.PHONY: test-race
test-race: ## Every test under the race detector; missing prerequisites fail instead of skipping.
	FERRY_TEST_STRICT=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

.PHONY: fmt-check
fmt-check: ## Fail if gofmt would change a file.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet.
	$(GO) vet $(PKGS)

.PHONY: lint
lint: ## golangci-lint with the repo's .golangci.yml (installed at the pinned version by `make deps`).
	@test -x $(GOLANGCI_LINT) || bash scripts/deps.sh --go-tools
	$(GOLANGCI_LINT) run $(PKGS)

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 20000x: executions, see scripts/fuzz.sh).
	@FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

.PHONY: bench
bench: ## Run the benchmarks for real and print the figures (see docs/BENCHMARKS.md).
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 -timeout 60m $(PKGS)

.PHONY: bench-relay
bench-relay: ## ferry-relay vs coturn on loopback: same Go client, alternating rounds; rt/s, RTT, CPU per round trip.
	@command -v turnserver >/dev/null || bash scripts/deps.sh
	$(GO) build -o bin/ ./cmd/ferry-relay ./cmd/ferry-relay-bench
	bin/ferry-relay-bench --ferry bin/ferry-relay $(BENCH_RELAY_FLAGS)

.PHONY: bench-rendezvous
bench-rendezvous: ## ferry-rendezvous on loopback: STUN CPU vs coturn, 20,000 logged-in peers (RSS/peer), routing p99 at 2,000 msg/s.
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/ferry-rendezvous ./cmd/ferry-rendezvous-bench
	bin/ferry-rendezvous-bench --ferry bin/ferry-rendezvous $(BENCH_RENDEZVOUS_FLAGS)

.PHONY: bench-dht
bench-dht: ## The DHT simulator at 10,000 nodes: no churn, 30% churn with 1% loss, 10% Sybil nodes (minutes each; JSON).
	$(GO) run ./dht/cmd/dhtsim --nodes 10000 --json
	$(GO) run ./dht/cmd/dhtsim --nodes 10000 --churn 0.3 --loss 0.01 --json
	$(GO) run ./dht/cmd/dhtsim --nodes 10000 --sybil 0.1 --json

.PHONY: bench-once
bench-once: ## Run every benchmark once (-benchtime=1x) so none rots.
	$(GO) test -run='^$$' -bench=. -benchtime=1x -count=1 -timeout 30m $(PKGS)

.PHONY: matrix
matrix: ## Run the NAT matrix in the lab (root, minutes) and rewrite docs/MATRIX.md from it.
	FERRY_TEST_STRICT=1 $(GO) test -race -count=1 -timeout 30m -run '^TestNATMatrix$$' ./internal/e2e/ -update

.PHONY: demo
demo: ## Run the demo: two peers on loopback, messages and a 10 MiB stream.
	$(GO) run ./cmd/ferry demo

.PHONY: generate
generate: ## Regenerate derived files (protobuf descriptor set for wire/; needs protoc).
	$(GO) generate ./...

.PHONY: images
images: ## Build the ferry-relay and ferry-rendezvous images with podman or buildah (VERSION=, IMAGE_REPO=; see deploy/).
	@bash deploy/images/build.sh

.PHONY: charts
charts: ## Chart checks only (lint, template, strict decode, schema cases, start what renders; root, podman).
	FERRY_TEST_STRICT=1 $(GO) test -race -count=1 -timeout 10m ./deploy/helm/charttest/

.PHONY: clean
clean: ## Remove build output.
	rm -rf bin

.PHONY: bench-gossip
bench-gossip: ## The gossip simulator at 1,000 nodes with 1% loss: no churn, then 20% churn (minutes each; JSON).
	$(GO) run ./gossip/cmd/gossipsim --nodes 1000 --messages 1000 --loss 0.01 --quiet --json
	$(GO) run ./gossip/cmd/gossipsim --nodes 1000 --messages 1000 --loss 0.01 --churn 0.2 --quiet --json
