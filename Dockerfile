# The production image of pcs-gateway.
#
#   docker build -t pcs-gateway .        (or: podman build -t pcs-gateway .)
#   docker run --rm --read-only -p 127.0.0.1:8000:8000 pcs-gateway serve --demo
#
# BASE_IMAGE is any Debian-like image with python3 (3.11 or newer) and its venv module;
# both stages use it, so the virtual environment finds the same interpreter at run time.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
# pip and the GraphiQL download trust the system CA bundle (a build may mount its own over it).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/pcs-gateway/venv
COPY pyproject.toml requirements.lock README.md ./
COPY schema ./schema
COPY gateway ./gateway
# The package and its runtime dependencies at the lock's versions (the lock's dev tools stay out).
RUN /opt/pcs-gateway/venv/bin/pip install --no-cache-dir --constraint requirements.lock . \
    && /opt/pcs-gateway/venv/bin/pcs-gateway graphiql-assets download /opt/pcs-gateway/graphiql \
    && /opt/pcs-gateway/venv/bin/pip uninstall --yes pip setuptools

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="pcs-gateway" \
      org.opencontainers.image.description="GraphQL gateway in front of AWS Parallel Computing Service (PCS)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
COPY --from=builder /opt/pcs-gateway /opt/pcs-gateway
ENV PATH=/opt/pcs-gateway/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PCS_GATEWAY_HOST=0.0.0.0 \
    PCS_GATEWAY_PORT=8000 \
    PCS_GATEWAY_GRAPHIQL_ASSETS_DIR=/opt/pcs-gateway/graphiql
# A numeric user, so a runtime can check runAsNonRoot without a passwd entry.
USER 10001:10001
EXPOSE 8000
# Liveness and readiness are the orchestrator's probes of /healthz and /readyz: no HEALTHCHECK.
ENTRYPOINT ["pcs-gateway"]
CMD ["serve"]
