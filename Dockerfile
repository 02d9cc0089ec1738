# syntax=docker/dockerfile:1
# One image for the four services and the migrations job, chosen by argument:
#   docker run engage run ingest|scoring|rewards|notify      (ports 8001-8004)
#   docker run engage migrate                                 (one-shot: every schema to head)
# Kafka and PostgreSQL come from the environment (ENGAGE_KAFKA_BOOTSTRAP, ENGAGE_DATABASE_URL or
# <SERVICE>_DATABASE_URL); the embedded broker and database are not in the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/engage
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p engage shared services \
    && touch engage/__init__.py shared/__init__.py services/__init__.py \
    && /opt/engage/bin/pip install --no-compile . \
    && /opt/engage/bin/pip uninstall --yes engage
COPY engage ./engage
COPY shared ./shared
COPY services ./services
RUN /opt/engage/bin/pip install --no-compile --no-deps . \
    && /opt/engage/bin/python -m compileall -q /opt/engage/lib \
    && /opt/engage/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="engage" \
      org.opencontainers.image.description="Engage services: ingest, scoring, rewards, notify" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/engage/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENGAGE_MIGRATE_ON_START=false
RUN groupadd --system --gid 10001 engage \
    && useradd --system --uid 10001 --gid engage --no-create-home --shell /usr/sbin/nologin engage
COPY --from=build /opt/engage /opt/engage
USER 10001:10001
WORKDIR /tmp
EXPOSE 8001 8002 8003 8004
ENTRYPOINT ["engage"]
CMD ["run", "ingest"]
