"""Gunicorn's logging in JSON like the rest; requests are logged by the app itself."""

accesslog = None
# GET /predict carries up to 100,000 bits in its query; the app bounds it (413), not the request line.
limit_request_line = 0
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"job": {"()": "worker.logs.JobIdFilter"}},
    "formatters": {"json": {"()": "worker.logs.formatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["job"], "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
    },
}


def post_worker_init(worker) -> None:
    """Import TensorFlow in the background after the fork, so the first prediction does not wait for it."""
    import threading

    threading.Thread(target=__import__, args=("tensorflow",), name="warm-tensorflow", daemon=True).start()
