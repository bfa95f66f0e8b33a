"""make run's Redis (docker/bin/redis-local): durable by default, and a warning for one that keeps nothing."""

import os
import signal
import subprocess
import time

import redis
from celery import Celery

from contract import tasks
from contract.job_store import JobStore
from tests.faults_support import base_environment
from tests.support import ROOT, RedisServer, free_port, wait_for

SCRIPT = str(ROOT / "docker" / "bin" / "redis-local")


def redis_local(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT], cwd=ROOT, env=base_environment(**env), capture_output=True, text=True, timeout=60)


def test_a_redis_that_keeps_nothing_is_used_with_a_warning(tmp_path, redis_server):
    done = redis_local(REDIS_URL=redis_server.url, ECHO_RNN_DATA=str(tmp_path))
    assert done.returncode == 0 and done.stdout.split() == [redis_server.url, "existing"], done
    assert "keeps nothing on disk" in done.stderr and "a restart loses every queued job" in done.stderr


def test_a_redis_with_its_append_only_file_is_used_quietly(tmp_path):
    durable = RedisServer(tmp_path / "durable", appendonly=True).start()
    try:
        done = redis_local(REDIS_URL=durable.url, ECHO_RNN_DATA=str(tmp_path))
        assert (
            done.returncode == 0 and done.stdout.split() == [durable.url, "existing"] and "WARNING" not in done.stderr
        )
    finally:
        durable.stop()


def test_a_redis_that_would_evict_is_used_with_a_warning(tmp_path):
    evicting = RedisServer(tmp_path / "evicting", appendonly=True).start()
    try:
        redis.Redis.from_url(evicting.url).config_set("maxmemory-policy", "allkeys-lru")
        done = redis_local(REDIS_URL=evicting.url, ECHO_RNN_DATA=str(tmp_path))
        assert done.returncode == 0 and done.stdout.split() == [evicting.url, "existing"], done
        assert "evicts keys when full (maxmemory-policy allkeys-lru)" in done.stderr, done.stderr
    finally:
        evicting.stop()


def test_its_own_redis_with_another_bound(tmp_path):
    port = free_port()
    started = redis_local(REDIS_PORT=str(port), ECHO_RNN_DATA=str(tmp_path), REDIS_MAXMEMORY="64mb")
    assert started.returncode == 0, started
    try:
        assert redis.Redis(port=port).config_get("maxmemory")["maxmemory"] == str(64 * 2**20)
    finally:
        os.kill(int((tmp_path / "redis.pid").read_text()), signal.SIGTERM)


def test_its_own_redis_keeps_queued_jobs_through_a_sigkill_and_restart(tmp_path):
    port = free_port()
    started = redis_local(REDIS_PORT=str(port), ECHO_RNN_DATA=str(tmp_path))
    url = f"redis://127.0.0.1:{port}/0"
    assert started.returncode == 0 and started.stdout.split() == [url, "started"], started
    pid = int((tmp_path / "redis.pid").read_text())
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("maxmemory")["maxmemory"] == str(768 * 2**20), "REDIS_MAXMEMORY's default, 768mb"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        store = JobStore(client)
        queued = [store.create({"num_epochs": 1}, steps=1) for _ in range(3)]
        sender = Celery("test-sender", broker=url, set_as_current=False)
        for job in queued:
            sender.send_task(tasks.TRAIN, args=[job.id, job.params], task_id=job.id)
        time.sleep(2)  # the append-only file is written every second
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: subprocess.run(["kill", "-0", str(pid)]).returncode != 0, 10, "redis-server dying")

        again = redis_local(REDIS_PORT=str(port), ECHO_RNN_DATA=str(tmp_path))
        assert again.returncode == 0 and again.stdout.split() == [url, "started"], again
        pid = int((tmp_path / "redis.pid").read_text())
        client = redis.Redis.from_url(url)
        store = JobStore(client)
        assert [store.get(j.id).status for j in queued] == ["queued"] * 3
        assert client.llen("celery") == 3 and store.count_by_status()["queued"] == 3
    finally:
        os.kill(pid, signal.SIGTERM)
