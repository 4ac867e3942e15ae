# One image for the whole platform; the entrypoint is the `csat` command line (services/cli/):
#   csat serve collector|scorer|actions|notifier   one service, one process (uvicorn, uvloop, httptools)
#   csat migrate                                   database migrations (the Kubernetes Job)
#   csat topics                                    create the topics (without Strimzi's topic operator)
#   csat dlq|replay|import|contracts               operator tools (docs/operations.md)
# devstack/ (the embedded broker and PostgreSQL of `make run` and the tests) is not in the image.
# Build: docker build -t csat-platform:0.1.0 .   (no Docker engine on the development machines: the
# image is built by CI/release tooling; deploy/k8s pins it with `kustomize edit set image`).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
# Dependencies first (cached while only the code changes), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY alembic.ini ./
COPY migrations ./migrations
COPY shared ./shared
COPY services ./services
COPY contracts ./contracts
RUN uv sync --frozen --no-dev

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 csat \
    && useradd --system --uid 10001 --gid csat --no-create-home --shell /usr/sbin/nologin csat
WORKDIR /app
COPY --from=build --chown=root:root /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CSAT_HOST=0.0.0.0 \
    CSAT_LOG_FORMAT=json
# Runs as a non-root user with a read-only root filesystem (only /tmp is written, an emptyDir in k8s).
USER 10001:10001
EXPOSE 8000 8001 8002 8003
ENTRYPOINT ["csat"]
CMD ["serve", "collector"]
