# Tether. `make sandbox` starts host + members + Tether; `make test` runs everything CI runs.
GO          ?= go
SANDBOX_DIR ?= $(CURDIR)/.sandbox
BIN         := $(CURDIR)/bin
PHASE       := hack/phase.sh
# Packages with unit tests: all but the e2e suites, which need the harness.
UNIT_PKGS    = $(shell $(GO) list ./... | grep -v /test/e2e)
E2E_TIMEOUT ?= 30m
# One set of Go build settings for every build here (binaries, vet, lint, tests, the control plane, the images):
# static binaries without local paths, as the images ship them, so that `make images` links what `make build` and
# the tests compiled instead of compiling everything (k8s.io/kubernetes included) a second time.
export CGO_ENABLED := 0
export GOFLAGS := -trimpath $(filter-out -trimpath,$(GOFLAGS))

export SANDBOX_DIR
# The e2e packages run in their own folders: a relative TETHER_E2E_CLUSTERS must be made absolute here.
ifneq ($(TETHER_E2E_CLUSTERS),)
export TETHER_E2E_CLUSTERS := $(abspath $(TETHER_E2E_CLUSTERS))
endif

.PHONY: all build vet lint fmt unit e2e test tools sandbox sandbox-down sandbox-status bench clean chart-test chart-docs images images-test

all: build

# tether-scheduler is built from its own module (scheduler/), stamped with the kube-scheduler release it embeds.
KUBE_VERSION = $(shell cd scheduler && $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
SCHED_LDFLAGS = $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,-X $(p).gitVersion=$(KUBE_VERSION))
build:
	$(GO) build -o $(BIN)/ ./cmd/...
	cd scheduler && $(GO) build -o $(BIN)/ -ldflags "$(SCHED_LDFLAGS)" ./cmd/tether-scheduler

vet:
	$(GO) vet ./...
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

unit:
	$(GO) test -count=1 $(UNIT_PKGS)
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
	@$(PHASE) chart $(MAKE) --no-print-directory chart-test
	@$(PHASE) tools $(MAKE) --no-print-directory tools
	@$(PHASE) e2e $(MAKE) --no-print-directory e2e

# The Helm chart (charts/tether): `helm lint` with the defaults and with every component on, the helm-unittest suites
# of charts/tether/tests, charts/tether/README.md as helm-docs writes it from values.yaml (`make chart-docs`
# rewrites it), then `make images-test` (the images the chart names). helm, helm-unittest and helm-docs are built
# from their pin (the module hack/tools/helm) into the tools cache by hack/tools/helm.sh, once.
CHART      := charts/tether
CHART_LINT := --set descheduler.enabled=true,scheduler.enabled=true,node.replicas=2,node.kubelet.rotateServerCertificates=true,serviceMonitor.enabled=true
chart-test:
	@tools=$$(hack/tools/helm.sh) && export HELM_PLUGINS=$$tools/plugins && set -e && \
	  $$tools/helm lint --strict $(CHART) && \
	  $$tools/helm lint --strict $(CHART) $(CHART_LINT) && \
	  $$tools/helm unittest --strict --color=false $(CHART) && \
	  $$tools/helm-docs --chart-search-root $(CHART) --dry-run --log-level warning | diff -u $(CHART)/README.md - || \
	  { echo "charts/tether: helm lint, helm unittest, or README.md out of date (run make chart-docs)"; exit 1; }
	@$(MAKE) --no-print-directory images-test

chart-docs:
	@tools=$$(hack/tools/helm.sh) && $$tools/helm-docs --chart-search-root $(CHART) --log-level warning

# OCI images of every binary, built without Docker or a registry (hack/images, go-containerregistry): static binaries
# (CGO_ENABLED=0) on an empty base, user 65532, written as image tarballs $(IMAGES_DIR)/<binary>.tar tagged
# $(IMAGE_REGISTRY)/<binary>:$(IMAGE_TAG), the names and tag the chart uses by default (tag: the chart's appVersion).
# `docker load -i`, `podman load -i`, `skopeo copy docker-archive:…` or `crane push` take them from there.
# tether-scheduler (the scheduler/ module) is included once scheduler/cmd/tether-scheduler/main.go exists.
IMAGE_REGISTRY ?= ghcr.io/tetherkube
IMAGE_TAG      ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' $(CHART)/Chart.yaml)
IMAGES_DIR     ?= $(BIN)/images
IMAGE_BINARIES := tether-node tether-webhook tether-descheduler tetherctl $(if $(wildcard scheduler/cmd/tether-scheduler/main.go),tether-scheduler)
images:
	$(GO) build -ldflags "-s -w" -o $(IMAGES_DIR)/bin/ ./cmd/...
	$(if $(filter tether-scheduler,$(IMAGE_BINARIES)),cd scheduler && $(GO) build -ldflags "-s -w $(SCHED_LDFLAGS)" -o $(IMAGES_DIR)/bin/ ./cmd/tether-scheduler)
	cd hack/images && SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) $(GO) run . -bin-dir $(IMAGES_DIR)/bin -out $(IMAGES_DIR) \
	  -registry $(IMAGE_REGISTRY) -tag $(IMAGE_TAG) -revision "$$(git rev-parse HEAD 2>/dev/null)" $(IMAGE_BINARIES)

# Reads every image back (entrypoint, user, labels, a static binary, the chart's name and tag), after the module's
# own tests.
images-test: images
	cd hack/images && TETHER_IMAGES_DIR=$(IMAGES_DIR) TETHER_IMAGES="$(IMAGE_BINARIES)" $(GO) test -count=1 ./...

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
