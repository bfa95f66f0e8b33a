# The worker image: a Celery worker (docker/bin/worker, as in the Procfile) training with TensorFlow.
#   TENSORFLOW=gpu (default): TensorFlow with CUDA and cuDNN from the wheels of tensorflow[and-cuda];
#                             the host gives the NVIDIA driver (NVIDIA Container Toolkit).
#   TENSORFLOW=cpu:           the CPU-only TensorFlow of make install and CI, no CUDA.
# Build context: the repository root
# (docker build -f docker/worker.Dockerfile --build-arg TENSORFLOW=cpu -t echo-rnn/worker:cpu .).

FROM python:3.11-slim-bookworm AS builder
ARG UV_VERSION=0.13.8
ENV UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && uv venv --python /usr/local/bin/python3.11 /opt/venv
WORKDIR /src
COPY pyproject.toml ./
COPY requirements/ requirements/
ARG TENSORFLOW=gpu
# The project's dependencies with the TensorFlow extra asked for, every version pinned by the locks
# (requirements/gpu.txt holds tensorflow[and-cuda] and the NVIDIA wheels, and agrees with
# requirements/lock.txt, what make install and CI use, on every package they share). MLflow is its
# client (mlflow-skinny): no tracking server or scikit-learn in this image (SQLAlchemy only as Optuna's
# requirement, which it imports for a database storage: never here; a tpe search's batches use Optuna).
# Left out: TensorFlow's C++ headers (tensorflow/include, 287 MB: they only build custom ops),
# libclang's library (clang/native, 61 MB: tensorflow requires the package, nothing imports it)
# and the packages' own test suites (71 MB).
RUN case "$TENSORFLOW" in cpu|gpu) ;; *) echo "TENSORFLOW must be gpu or cpu, not '$TENSORFLOW'" >&2; exit 1 ;; esac \
    && uv pip install --python /opt/venv/bin/python -r pyproject.toml --extra "$TENSORFLOW" \
        --constraint requirements/lock.txt --constraint requirements/gpu.txt \
    && site=/opt/venv/lib/python3.11/site-packages \
    && rm -rf "$site/tensorflow/include" "$site/clang/native" \
    && find "$site" -type d -name tests -prune -exec rm -rf {} +
COPY contract/ contract/
COPY worker/ worker/
RUN uv pip install --python /opt/venv/bin/python --no-deps --build-constraint requirements/lock.txt .
# Bytecode for what a worker imports, written by Python as it imports it (about 80 MB; compiling
# every package would add 190 MB). The unprivileged user the worker runs as could not write it.
RUN REDIS_URL=redis://localhost MLFLOW_TRACKING_URI=http://localhost TF_CPP_MIN_LOG_LEVEL=3 /opt/venv/bin/python -c \
        'import tensorflow, keras, pandas, mlflow.tensorflow, mlflow.models, matplotlib.backends.backend_agg, celery.bin.celery, celery.apps.worker, celery.concurrency.prefork, kombu.transport.redis, celery.backends.redis, worker.celery_app, worker.tasks, worker.attempt.attempt, worker.attempt.publishing, worker.attempt.watchdog, worker.engine.train, worker.engine.export, worker.engine.figure, worker.engine.onnx_graph, worker.tracking.model_upload, worker.tracking.backfill' \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib/python3.11/site-packages/contract \
        /opt/venv/lib/python3.11/site-packages/worker

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-log-init --create-home --home-dir /home/app app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY docker/bin/ docker/bin/
COPY docker/healthcheck.py docker/
# One job at a time: with the one GPU compose reserves per worker container, one job per GPU.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 WORKER_CONCURRENCY=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=15s --start-period=120s --retries=3 \
    CMD ["python", "docker/healthcheck.py", "worker"]
CMD ["docker/bin/worker"]
