# syntax=docker/dockerfile:1
# The sfls image: one image for the listener, the syncer and the importer (`sfls listener`,
# `sfls syncer`, `sfls import all`). Build: `make image` (buildah, no Docker engine needed; see
# deploy/image.sh), or `docker build -t sfls:0.1.0 .` anywhere a Docker engine runs.
#
# Stage 1 installs sfls and its pinned dependencies into a virtual environment; stage 2 copies
# only that environment onto a clean slim Python, so pip, setuptools, wheel caches and the
# source tree never reach the final image. Only the product is copied (shared/, services/): the
# local stack and its emulators (devstack/) are not part of the image. It runs as an unprivileged
# user with a read-only root filesystem in mind: nothing is written outside /tmp.
#
# The bases default to the official Python image. Any base with `python` (3.11), `pip` (22.3 or
# newer) in the build base, and groupadd/useradd in the runtime base works: `make image` uses a
# local Debian base (deploy/image.sh) when no registry serves the official one.

ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The virtual environment has no pip of its own: the build stage's pip installs into it.
RUN python -m venv --without-pip /opt/sfls
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY services ./services
# Every dependency is pinned by constraints.txt (the same lock CI installs).
RUN pip --python /opt/sfls/bin/python install --no-cache-dir --constraint constraints.txt . \
    && /opt/sfls/bin/sfls --help > /dev/null

FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sfls" \
      org.opencontainers.image.description="Keeps Salesforce and LogiSense Billing in sync through Apache Kafka." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/sfls/sfls"
# The base's pip, setuptools and wheel are not needed at run time. Only a pip that pip installed
# (it has a RECORD, as in the official image) can remove itself; a distribution's pip (Debian's
# belongs to dpkg) or a base without pip (the local runtime base) is left as it is.
RUN if python -c "import importlib.metadata as m, sys; sys.exit(m.distribution('pip').files is None)" 2> /dev/null; \
    then python -m pip uninstall --yes --no-cache-dir pip setuptools wheel; fi \
    && groupadd --system --gid 10001 sfls \
    && useradd --system --uid 10001 --gid sfls --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sfls
COPY --from=build /opt/sfls /opt/sfls
ENV PATH=/opt/sfls/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SFLS_OBSERVABILITY__METRICS_PORT=9100
WORKDIR /tmp
USER 10001:10001
# /metrics, /healthz and /readyz of every long-running service.
EXPOSE 9100
ENTRYPOINT ["sfls"]
CMD ["--help"]
