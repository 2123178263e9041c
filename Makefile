# Tether. `make sandbox` starts host + members + Tether; `make test` runs everything CI runs.
GO          ?= go
SANDBOX_DIR ?= $(CURDIR)/.sandbox
BIN         := $(CURDIR)/bin
PHASE       := hack/phase.sh
# Packages with unit tests: all but the e2e suites, which need the harness.
UNIT_PKGS    = $(shell $(GO) list ./... | grep -v /test/e2e)
E2E_TIMEOUT ?= 30m

export SANDBOX_DIR
# The e2e packages run in their own folders: a relative TETHER_E2E_CLUSTERS must be made absolute here.
ifneq ($(TETHER_E2E_CLUSTERS),)
export TETHER_E2E_CLUSTERS := $(abspath $(TETHER_E2E_CLUSTERS))
endif

.PHONY: all build vet lint fmt unit e2e test tools sandbox sandbox-down sandbox-status bench clean

all: build

# tether-scheduler is built from its own module (scheduler/), stamped with the kube-scheduler release it embeds.
KUBE_VERSION = $(shell cd scheduler && $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
SCHED_LDFLAGS = $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,-X $(p).gitVersion=$(KUBE_VERSION))
# tether-scheduler is built from its own module (scheduler/), stamped with the kube-scheduler release it embeds.
KUBE_VERSION = $(shell cd scheduler && $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
SCHED_LDFLAGS = $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,-X $(p).gitVersion=$(KUBE_VERSION))
build:
	$(GO) build -o $(BIN)/ ./cmd/...
	cd scheduler && $(GO) build -o $(BIN)/ -ldflags "$(SCHED_LDFLAGS)" ./cmd/tether-scheduler
	cd scheduler && $(GO) build -o $(BIN)/ -ldflags "$(SCHED_LDFLAGS)" ./cmd/tether-scheduler

vet:
	$(GO) vet ./...
	cd scheduler && $(GO) vet ./...
	cd scheduler && $(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

# golangci-lint (.golangci.yml), pinned in hack/tools/golangci-lint and built once into the Go build cache.
GOLANGCI_LINT = $(GO) tool -modfile=hack/tools/golangci-lint/go.mod golangci-lint
lint:
	$(GOLANGCI_LINT) run ./...
	cd scheduler && $(GO) tool -modfile=../hack/tools/golangci-lint/go.mod golangci-lint run --config ../.golangci.yml ./...
	cd scheduler && $(GO) tool -modfile=../hack/tools/golangci-lint/go.mod golangci-lint run --config ../.golangci.yml ./...

unit:
	$(GO) test -count=1 $(UNIT_PKGS)
	cd scheduler && $(GO) test -count=1 ./...
	cd scheduler && $(GO) test -count=1 ./...

# The control-plane binaries, built once per pin into the cache (~/.cache/tether or $$TETHER_CACHE_DIR).
tools: build
	$(BIN)/tetherctl sandbox tools

# The e2e suites start their own host + members, or reuse running ones: TETHER_E2E_CLUSTERS=$(SANDBOX_DIR).
# One package at a time: each brings up its own clusters, and two at once would thrash two cores.
e2e: tools
	$(GO) test -p 1 -count=1 -timeout $(E2E_TIMEOUT) -v ./test/e2e/...

test:
	@$(PHASE) vet $(MAKE) --no-print-directory vet
	@$(PHASE) lint $(MAKE) --no-print-directory lint
	@$(PHASE) unit $(MAKE) --no-print-directory unit
	@$(PHASE) tools $(MAKE) --no-print-directory tools
	@$(PHASE) e2e $(MAKE) --no-print-directory e2e

# Throughput, latency, API cost, memory and restart of the pod path against vanilla Kubernetes, on clusters of its
# own (docs/benchmarks.md). Never part of `make test`. Flags: make bench BENCH_ARGS="-workloads w1 -n 1000" (-h lists them).
BENCH_ARGS ?=
bench:
	$(GO) run ./test/bench $(BENCH_ARGS)

sandbox: build
	$(BIN)/tetherctl sandbox up --dir $(SANDBOX_DIR)

sandbox-down: build
	$(BIN)/tetherctl sandbox down --dir $(SANDBOX_DIR)

sandbox-status: build
	$(BIN)/tetherctl sandbox status --dir $(SANDBOX_DIR)

clean:
	rm -rf $(BIN)
