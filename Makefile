# The two commands: `make run` (the exporter on a demo PKI) and `make test` (everything CI runs).
CACHE ?= $(or $(MESHCERT_CACHE),$(HOME)/.cache/meshcert-exporter)
export PATH := $(CACHE)/bin:$(PATH)
GO ?= go

.PHONY: run test tools testenv lint unit bench bench-scale examples build image generate fuzz

## run: serve a demo Istio and Linkerd PKI with problems to show (made now, dated from now) on :9733.
run:
	$(GO) run ./hack/gen-examples -demo -out $(CACHE)/demo
	$(GO) run . --config.file=$(CACHE)/demo/meshcert.yaml

## build: a static binary (CGO off) with version information, in .build/<os>-<arch>/.
GOOS ?= $(shell $(GO) env GOOS)
GOARCH ?= $(shell $(GO) env GOARCH)
APP_VERSION := $(shell sed -n 's/^appVersion: "\(.*\)"$$/\1/p' chart/Chart.yaml)
build:
	CGO_ENABLED=0 GOOS=$(GOOS) GOARCH=$(GOARCH) $(GO) build -trimpath -o .build/$(GOOS)-$(GOARCH)/meshcert-exporter -ldflags "-s -w \
	  -X github.com/prometheus/common/version.Version=$(APP_VERSION) \
	  -X github.com/prometheus/common/version.Revision=$$(git rev-parse HEAD 2>/dev/null) \
	  -X github.com/prometheus/common/version.Branch=$$(git rev-parse --abbrev-ref HEAD 2>/dev/null) \
	  -X github.com/prometheus/common/version.BuildDate=$$(date -u +%Y%m%d-%H:%M:%S)" .

## image: the release image: the binary of `make build` on a static, non-root base (the tag the chart uses).
IMAGE ?= ghcr.io/meshcert/meshcert-exporter
CONTAINER ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
BASE ?= gcr.io/distroless/static-debian12:nonroot
image:
	$(MAKE) build GOOS=linux
	$(CONTAINER) build --target release --build-arg BASE=$(BASE) --build-arg TARGETARCH=$(GOARCH) -t $(IMAGE):$(APP_VERSION) .

## test: install the tools, build the test control plane and istiod's CA code (cached), lint, run every test with -race.
test: tools testenv lint unit

tools:
	@bash hack/install-tools.sh

testenv:
	@bash hack/build-testenv.sh >/dev/null
	@bash hack/build-istio-ca.sh >/dev/null

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...

unit:
	MESHCERT_TESTENV=$$(bash hack/build-testenv.sh) MESHCERT_ISTIO_CA=$$(bash hack/build-istio-ca.sh) $(GO) test -race -count=1 ./...

## bench: the Go benchmarks (not part of `make test`); the Kubernetes ones use the test control plane.
bench: testenv
	MESHCERT_TESTENV=$$(bash hack/build-testenv.sh) $(GO) test -run '^$$' -bench . -benchmem ./...

## bench-scale: the exporter binary against the real API server at scale; writes docs/performance.md.
bench-scale: testenv
	MESHCERT_TESTENV=$$(bash hack/build-testenv.sh) $(GO) run ./hack/bench-scale

## fuzz: run every fuzz target for FUZZTIME each (the normal test run replays their seeds).
FUZZTIME ?= 5m
FUZZ_TARGETS = \
	./internal/pki:FuzzParseBundle ./internal/pki:FuzzAnalyze ./internal/pki:FuzzParseSPIFFEID \
	./internal/mesh/linkerd:FuzzParseIdentity ./internal/config:FuzzParse ./internal/mesh/istio:FuzzParseEnvoyConfigDump \
	./internal/mesh/istio:FuzzParseEnvoyCerts ./internal/mesh/istio:FuzzParseZtunnelConfigDump ./internal/mesh/linkerd:FuzzParseProxyMetrics \
	./internal/pkiapi:FuzzQuery
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; echo "== $$fn ($$pkg) for $(FUZZTIME)"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -parallel 1; \
	done

## generate: copy the alert rules and dashboards into the chart, write the chart's template of the meshes' watches, the RBAC tables of docs/security.md and chart/README.md, and docs/metrics.md's family reference from the code (their tests check they match).
generate:
	cp alerts/meshcert.rules.yml chart/files/meshcert.rules.yml
	cp dashboards/*.json chart/files/dashboards/
	$(GO) test ./chart -run '^(TestMeshTemplateIsCurrent|TestRBACTablesAreCurrent)$$' -update
	$(GO) test ./collector -run '^TestFamilyReferenceIsCurrent$$' -update

## examples: regenerate the sample PKI.
examples:
	$(GO) run ./hack/gen-examples -out examples
