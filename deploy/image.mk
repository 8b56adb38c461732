# The image without a Docker engine (included by the Makefile). Everything goes through deploy/image.sh,
# the one place that knows how to call buildah, podman and mmdebstrap here; tests/deploy/test_image.py
# builds and runs the image through it too.
#   make image                     build localhost/sfls:<version> (official python base, else a local Debian one)
#   make image-run CMD='syncer' IMAGE_RUN_ARGS='--env-file sfls.env --volume ca.pem:/etc/sfls/ca.pem:ro'
#                                  run it read-only (only /tmp writable) as uid 10001 on the host network
#   make audit                     pip-audit of the runtime dependency set pinned by constraints.txt

IMAGE_SH := deploy/image.sh
CMD ?= --help
IMAGE_RUN_ARGS ?=
IMAGE_TOOLS := buildah podman mmdebstrap runc

.PHONY: image image-run image-tools audit

# `make tools` (and so `make test`) installs the image tools too.
tools: image-tools

image-tools: ## install buildah, podman, mmdebstrap and runc (apt, as root) for the image build and its tests
	@missing=""; for tool in $(IMAGE_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's$$missing packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(IMAGE_TOOLS); \
	else \
	  echo "$$missing missing: run 'sudo apt-get install $(IMAGE_TOOLS)' (Debian 12 or newer), then make again" >&2; \
	  exit 1; \
	fi

image: image-tools ## build the image with buildah (localhost/sfls:<version>) and print its size
	$(IMAGE_SH) build

image-run: ## run the built image read-only: CMD='sfls arguments', IMAGE_RUN_ARGS='podman run options'
	$(IMAGE_SH) run --read-only --read-only-tmpfs=false --tmpfs /tmp --user 10001:10001 $(IMAGE_RUN_ARGS) \
	  $$($(IMAGE_SH) name) $(CMD)

audit: $(STAMP) ## pip-audit the runtime dependencies constraints.txt pins (accepted advisories: deploy/audit-accepted.txt)
	$(BIN)/python scripts/audit_runtime.py
