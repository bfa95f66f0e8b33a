# The MLflow image: the tracking server with proxied artifacts and its login (docker/bin/mlflow, as in
# the Procfile) and the PostgreSQL driver of its backend store; no TensorFlow, no project code.
# Build context: the repository root (docker build -f docker/mlflow.Dockerfile .).

FROM python:3.11-slim-bookworm AS builder
ARG UV_VERSION=0.13.8
ENV UV_COMPILE_BYTECODE=1 UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && uv venv --python /usr/local/bin/python3.11 /opt/venv
WORKDIR /src
COPY pyproject.toml ./
COPY requirements/ requirements/
# pyproject.toml's server extra only (mlflow[auth], its login included, and psycopg2-binary), every
# version pinned by the locks that make install and CI use; none of the API's or workers' packages.
RUN python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["server"], sep="\n")' \
        > server.txt \
    && uv pip install --python /opt/venv/bin/python -r server.txt \
        --constraint requirements/lock.txt --constraint requirements/gpu.txt

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-log-init --create-home --home-dir /home/app app \
    && mkdir -p /mlflow/artifacts \
    && chown app:app /mlflow/artifacts
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY docker/bin/ docker/bin/
COPY docker/healthcheck.py docker/
# The backend store (MLFLOW_BACKEND_STORE_URI, a secret: it holds the database password) comes
# from the environment at run time; the artifacts go to a volume mounted on /mlflow/artifacts.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MLFLOW_PORT=5000 \
    MLFLOW_ARTIFACTS_DESTINATION=/mlflow/artifacts
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "docker/healthcheck.py", "mlflow"]
CMD ["docker/bin/mlflow"]
