# The API image: granian serving service.wsgi:app (docker/bin/api, as in the Procfile), serving each
# model's ONNX graph with ONNX Runtime: no TensorFlow, no CUDA. compose.yaml's flower service runs it too.
# Build context: the repository root (docker compose build, or docker build -f docker/api.Dockerfile .).

FROM python:3.11-slim-bookworm AS builder
ARG UV_VERSION=0.13.8
ENV UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && uv venv --python /usr/local/bin/python3.11 /opt/venv
WORKDIR /src
COPY pyproject.toml ./
COPY requirements/ requirements/
# The project's dependencies with ONNX Runtime (the api extra), every version pinned by the locks
# that make install and CI use (make lock writes both from pyproject.toml: one resolution). MLflow
# is its client (mlflow-skinny): no tracking server or scikit-learn in this image (SQLAlchemy only as
# Optuna's requirement, which it imports for a database storage: never here).
# Left out: the packages' own test suites.
RUN uv pip install --python /opt/venv/bin/python -r pyproject.toml --extra api \
        --constraint requirements/lock.txt --constraint requirements/gpu.txt \
    && site=/opt/venv/lib/python3.11/site-packages \
    && find "$site" -type d -name tests -prune -exec rm -rf {} +
COPY contract/ contract/
COPY service/ service/
RUN uv pip install --python /opt/venv/bin/python --no-deps --build-constraint requirements/lock.txt .
# Bytecode for what the API and Flower import, written by Python as it imports it (compiling every
# package would add much more). The unprivileged user they run as could not write it.
RUN REDIS_URL=redis://localhost MLFLOW_TRACKING_URI=http://localhost /opt/venv/bin/python -c \
        'import onnxruntime, mlflow.artifacts, granian, service.app, service.serving, flower.command, flower.app, celery.bin.celery, kombu.transport.redis' \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib/python3.11/site-packages/contract \
        /opt/venv/lib/python3.11/site-packages/service

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-log-init --create-home --home-dir /home/app app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY docker/bin/ docker/bin/
COPY docker/healthcheck.py docker/
COPY docker/granian-logging.json docker/
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 API_PORT=8000
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "docker/healthcheck.py", "api"]
CMD ["docker/bin/api"]
