# syntax=docker/dockerfile:1
# The sfls image: one image for the listener, the syncer and the importer (`sfls listener`,
# `sfls syncer`, `sfls import all`). Build: docker build -t sfls:0.1.0 .
#
# Stage 1 installs sfls and its pinned dependencies into a virtual environment; stage 2 copies
# only that environment onto a clean slim Python, so pip, setuptools, wheel caches and the
# source tree never reach the final image. It runs as an unprivileged user with a read-only
# root filesystem in mind: nothing is written outside /tmp.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

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
COPY devstack ./devstack
# Every dependency is pinned by constraints.txt (the same lock CI installs).
RUN pip --python /opt/sfls/bin/python install --no-cache-dir --constraint constraints.txt . \
    && /opt/sfls/bin/sfls --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sfls" \
      org.opencontainers.image.description="Keeps Salesforce and LogiSense Billing in sync through Apache Kafka." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/sfls/sfls"
# pip and setuptools of the base image are not needed at run time.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
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
