# syntax=docker/dockerfile:1
# LeaseWatch image: the `leasewatch` command (cloud ingestor, API, simulator, edge agent).
#
#   docker build -t leasewatch:local .                       # the runtime image (last stage)
#   docker build --target broker-tools -t leasewatch-broker-tools:local .
#
# docker-compose.yml builds both; tests/test_compose.py checks this file's basics (base image,
# non-root user, ENTRYPOINT, every package of pyproject.toml copied in).

## Build stage: install the package and its pinned dependencies into a virtual environment.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/leasewatch
WORKDIR /src
# Only what `pip install .` needs (pyproject's readme and packages); .dockerignore keeps
# caches, virtual environments and local secrets out of the build context.
COPY pyproject.toml README.md ./
COPY leasewatch ./leasewatch
COPY edge ./edge
COPY cloud ./cloud
COPY firmware_sim ./firmware_sim
COPY dashboards ./dashboards
RUN /opt/leasewatch/bin/pip install .

## Base of both images: the environment and an unprivileged account, shared by the two images below.
FROM python:3.11-slim AS app
ENV PATH=/opt/leasewatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/leasewatch /opt/leasewatch
RUN groupadd --system --gid 10001 leasewatch \
    && useradd --system --uid 10001 --gid leasewatch --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin leasewatch \
    && install -d -o leasewatch -g leasewatch -m 0750 /var/lib/leasewatch

## Setup image for `docker compose run --rm broker-files` (deploy/compose/README.md): the
## package plus `mosquitto_passwd`, which cloud.broker_access calls to hash the password file.
## It runs as root only to hand the files to the broker's uid; it never runs a service.
FROM app AS broker-tools
RUN apt-get update \
    && apt-get install --yes --no-install-recommends mosquitto \
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["python"]

## The runtime image (the default target, being the last stage): non-root, one entry point.
FROM app AS runtime
USER leasewatch:leasewatch
## The edge agent's default buffer lives here (edge/sample.toml: data_dir); the cloud keeps
## nothing on local disk when it runs on VictoriaMetrics and PostgreSQL.
WORKDIR /var/lib/leasewatch
ENTRYPOINT ["leasewatch"]
CMD ["--help"]
