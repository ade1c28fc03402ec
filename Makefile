# Fornax. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

BIN := $(CURDIR)/bin
export FORNAX_BIN := $(BIN)
# controller-runtime's envtest finds the same pinned binaries here.
export KUBEBUILDER_ASSETS := $(BIN)

GO ?= go
# Integration tests start real clusters; a whole run takes a few minutes on 2 cores.
TEST_TIMEOUT ?= 45m
TEST_FLAGS ?=
BENCH_FLAGS ?=

PRODUCT_BINS := fornaxctl fornaxd fornax-cni
# A release build carries its tag; any other build the version Go records
# from the checkout (a pseudo-version with the commit; internal/version).
VERSION ?= $(shell git describe --tags --exact-match 2>/dev/null)
LDFLAGS := $(if $(VERSION),-X github.com/fornax-edge/fornax/internal/version.Version=$(VERSION))

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n\n"} /^[a-zA-Z_-]+:.*##/ { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: tools
tools: ## Build the pinned Kubernetes, etcd, kine, kwok, generator and linter binaries into bin/ (cold: ~15 min).
	@hack/tools/build.sh

.PHONY: generate
generate: ## Regenerate deepcopy, CRDs (controller-gen) and protobuf code (buf).
	@hack/tools/build.sh controller-gen buf protoc-gen-go protoc-gen-go-grpc >/dev/null
	@hack/generate.sh

.PHONY: verify-generate
verify-generate: ## Fail if generated files are out of date with api/ and proto/.
	@hack/tools/build.sh controller-gen buf protoc-gen-go protoc-gen-go-grpc >/dev/null
	@hack/generate.sh --verify

.PHONY: build
build: ## Build Fornax's binaries into bin/ (and fornaxctl as the kubectl plugin kubectl-fornax).
	@$(GO) build -buildvcs=auto -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./cmd/,$(PRODUCT_BINS))
	@ln -sf fornaxctl $(BIN)/kubectl-fornax

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint (.golangci.yml).
	@hack/tools/build.sh golangci-lint >/dev/null
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*' -not -path './.fornax/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	@$(GO) vet ./...
	@$(BIN)/golangci-lint run ./...

.PHONY: test
test: tools verify-generate lint ## Build what is needed and run every test (real clusters; about 15 min with tools built).
	@$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./...

.PHONY: bench
bench: tools ## Run the benchmarks and write docs/benchmarks.md and docs/benchmarks.json (about 40 min, half of it the 1,000/5,000/10,000-cluster hub scale; the partition and network ones need root, the network one iperf3).
	@mkdir -p .fornax
	@{ $(GO) test -run '^$$' -bench . -benchtime=3x $(BENCH_FLAGS) -timeout 60m ./internal/...; \
	   $(GO) test -run '^$$' -bench . -benchtime=1x $(BENCH_FLAGS) -timeout 120m ./test/...; } | tee .fornax/bench.out
	@$(GO) run ./hack/benchreport -in .fornax/bench.out -md docs/benchmarks.md -json docs/benchmarks.json

.PHONY: demo
demo: tools build ## Start a root and a tree of four edge clusters two deep (one K3s-style), join them with Fornax, deliver sample missions, print the tree.
	@$(BIN)/fornaxctl demo up

.PHONY: demo-down
demo-down: ## Stop and remove the demo clusters.
	@if [ -x $(BIN)/fornaxctl ]; then $(BIN)/fornaxctl demo down; else $(GO) run ./cmd/fornaxctl demo down; fi

.PHONY: clean
clean: ## Remove bin/ (the tool cache in ~/.cache/fornax stays).
	rm -rf $(BIN)
