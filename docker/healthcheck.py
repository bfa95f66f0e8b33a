"""The containers' health checks (the slim images have no curl): exit 0 when the role answers.

    python docker/healthcheck.py api|mlflow|flower|worker

The HEALTHCHECK of each image and the healthcheck of each compose.yaml service run this.
The HTTP roles are asked on 127.0.0.1 at the port their docker/bin script listens on; a worker
is asked over the broker whether the Celery node of this very container answers a ping.
"""

import os
import sys
import urllib.request

TIMEOUT_S = 5

# role: (the port's variable in docker/bin/<role>, its default there, the path that answers 200)
HTTP = {
    "api": ("API_PORT", "8000", "/healthz"),
    "mlflow": ("MLFLOW_PORT", "5000", "/health"),
    "flower": ("FLOWER_PORT", "5555", "/healthcheck"),
}


def http_ok(role: str) -> bool:
    """GET the role's health path on this container."""
    variable, default, path = HTTP[role]
    url = f"http://127.0.0.1:{os.environ.get(variable, default)}{path}"
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        return response.status == 200


def worker_ok() -> bool:
    """Ping this container's Celery node (named as docker/bin/worker names it: WORKER_NAME@host)."""
    from celery.utils.nodenames import host_format

    from worker.celery_app import app

    node = host_format(f"{os.environ.get('WORKER_NAME', 'worker')}@%h")
    return bool(app.control.ping(destination=[node], timeout=TIMEOUT_S))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in {*HTTP, "worker"}:
        print(f"usage: {argv[0]} {'|'.join([*HTTP, 'worker'])}", file=sys.stderr)
        return 2
    role = argv[1]
    try:
        healthy = worker_ok() if role == "worker" else http_ok(role)
    except Exception as error:  # noqa: BLE001 (any failure to answer is "unhealthy", with the reason in the log)
        print(f"{role} unhealthy: {error}", file=sys.stderr)
        return 1
    if not healthy:
        print(f"{role} unhealthy: no answer", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
