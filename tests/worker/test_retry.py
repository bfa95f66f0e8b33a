"""Outage and BestEffort: retrying, backing off and giving up on a server that is away; Redis's transient errors."""

import threading
import time
from collections.abc import Callable

import pytest
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.support import RedisServer
from worker.retry import BestEffort, Outage, Unreachable, redis_outage, redis_transient

pytestmark = pytest.mark.timeout(30)  # a broken give-up would retry forever


class Down(Exception):
    """The test's own transient error."""


def is_down(exc: BaseException) -> bool:
    return isinstance(exc, Down)


class Flaky:
    """A call that raises `error` for its first `failures` calls, then returns "ok"; records when it was called."""

    def __init__(self, failures: float, error: Callable[[], Exception] = lambda: Down("refused")):
        self.failures, self.error = failures, error
        self.times: list[float] = []

    def __call__(self) -> str:
        self.times.append(time.monotonic())
        if len(self.times) <= self.failures:
            raise self.error()
        return "ok"

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


FOREVER = float("inf")


def down_then(error: type[Exception]) -> Callable[[], str]:
    """A call that fails transiently once, then with error (which ends the call, not the outage)."""
    calls = []

    def fn() -> str:
        calls.append(1)
        raise Down() if len(calls) == 1 else error()

    return fn


class GaveUp(Exception):
    """The error class a test's Outage raises when it gives up."""

    def __init__(self, message: str):  # Outage builds it from a message alone
        super().__init__(message)


# --- Outage --------------------------------------------------------------------------------------


def test_transient_errors_are_retried_with_doubling_delays_until_the_call_succeeds():
    fn = Flaky(3)
    outage = Outage("the server", 10, is_down, first_delay_s=0.2)
    assert outage.call(fn, "testing") == "ok"
    assert len(fn.times) == 4
    assert all(d <= g < d * 1.5 + 0.1 for g, d in zip(fn.gaps, (0.2, 0.4, 0.8))), fn.gaps
    assert outage.down_s == 0 and not outage.given_up


def test_delays_stop_growing_at_max_delay_s():
    fn = Flaky(6)
    Outage("the server", 10, is_down, first_delay_s=0.05, max_delay_s=0.1).call(fn, "testing")
    assert len(fn.gaps) == 6 and all(0.1 <= g < 0.5 for g in fn.gaps[1:]), fn.gaps  # uncapped, the last would be 1.6 s


def test_it_gives_up_past_limit_s_with_its_error_class_naming_the_server_and_the_work():
    fn = Flaky(FOREVER, lambda: Down("connection refused"))
    outage = Outage("Thing at http://thing:1", 0.4, is_down, GaveUp, first_delay_s=0.05)
    started = time.monotonic()
    with pytest.raises(GaveUp) as raised:
        outage.call(fn, "sending the points")
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5, elapsed
    message = str(raised.value)
    assert message.startswith("Thing at http://thing:1 unreachable for 0 s (limit 0.4 s) while sending the points")
    assert message.endswith("Down: connection refused")
    assert isinstance(raised.value.__cause__, Down)
    assert outage.given_up and outage.down_s >= 0.4


def test_the_default_error_is_unreachable_a_runtime_error():
    with pytest.raises(Unreachable, match="while testing"):
        Outage("the server", 0, is_down).call(Flaky(FOREVER), "testing")
    assert issubclass(Unreachable, RuntimeError)


def test_it_never_sleeps_past_what_is_left_of_the_limit():
    outage = Outage("the server", 0.3, is_down, first_delay_s=5)
    started = time.monotonic()
    with pytest.raises(Unreachable):
        outage.call(Flaky(FOREVER), "testing")
    assert time.monotonic() - started < 1


def test_a_limit_of_zero_gives_one_try():
    fn = Flaky(FOREVER)
    with pytest.raises(Unreachable):
        Outage("the server", 0, is_down).call(fn, "testing")
    assert len(fn.times) == 1


def test_after_giving_up_each_later_call_gets_one_try_not_a_new_limit():
    outage = Outage("the server", 0.2, is_down, first_delay_s=0.05)
    with pytest.raises(Unreachable):
        outage.call(Flaky(FOREVER), "first")
    later = Flaky(FOREVER)
    with pytest.raises(Unreachable, match="while second"):
        outage.call(later, "second")
    assert len(later.times) == 1


def test_the_outage_is_counted_from_the_first_failure_across_calls():
    outage = Outage("the server", 0.5, is_down, first_delay_s=0.05)
    with pytest.raises(ValueError):
        outage.call(down_then(ValueError), "first")
    assert outage.down_s > 0 and not outage.given_up
    time.sleep(0.5)
    later = Flaky(FOREVER)
    with pytest.raises(Unreachable):
        outage.call(later, "second")
    assert len(later.times) == 1, "the second call inherits the outage begun by the first"


def test_the_outage_is_shared_by_threads():
    outage = Outage("the server", 0.6, is_down, first_delay_s=0.05)
    ended: list[float] = []

    def call() -> None:
        with pytest.raises(Unreachable):
            outage.call(Flaky(FOREVER), "in a thread")
        ended.append(time.monotonic())

    started = time.monotonic()
    first = threading.Thread(target=call)
    first.start()
    time.sleep(0.4)
    second = threading.Thread(target=call)
    second.start()
    first.join(5), second.join(5)
    assert len(ended) == 2 and all(
        e - started < 0.85 for e in ended
    )  # a limit of its own: 1 s, [e - started for e in ended]


def test_errors_that_are_not_transient_are_raised_at_once():
    error = ValueError("bad request")
    fn = Flaky(FOREVER, lambda: error)
    outage = Outage("the server", 10, is_down)
    with pytest.raises(ValueError) as raised:
        outage.call(fn, "testing")
    assert raised.value is error and len(fn.times) == 1
    assert outage.down_s == 0 and not outage.given_up


def test_a_success_ends_the_outage_and_the_next_one_gets_a_full_limit():
    outage = Outage("the server", 0.2, is_down, first_delay_s=0.05)
    with pytest.raises(Unreachable):
        outage.call(Flaky(FOREVER), "first")
    assert outage.call(lambda: 42, "second") == 42
    assert not outage.given_up and outage.down_s == 0
    fn = Flaky(FOREVER)
    with pytest.raises(Unreachable):
        outage.call(fn, "third")
    assert len(fn.times) >= 3, "retried again within a fresh limit"


def test_down_s_grows_while_the_server_is_away():
    outage = Outage("the server", 10, is_down, first_delay_s=0.05)
    with pytest.raises(ValueError):
        outage.call(down_then(ValueError), "testing")
    first = outage.down_s
    time.sleep(0.1)
    assert 0.05 <= first < outage.down_s


# --- BestEffort ----------------------------------------------------------------------------------


def test_best_effort_returns_the_default_while_down_and_skips_calls_for_pause_s():
    effort = BestEffort("Redis", is_down, pause_s=0.5)
    fn = Flaky(FOREVER)
    assert effort.call(fn, "recording", "default") == "default"
    assert effort.call(fn, "recording", "default") == "default"
    assert effort.call(fn, "recording") is None
    assert len(fn.times) == 1, "skipped, not tried"
    time.sleep(0.5)
    assert effort.call(lambda: "back", "recording", "default") == "back"


def test_best_effort_resumes_calling_after_the_pause_and_pauses_again_on_the_next_failure():
    effort = BestEffort("Redis", is_down, pause_s=0.1)
    fn = Flaky(1)
    assert effort.call(fn, "recording", "default") == "default"
    time.sleep(0.1)
    assert effort.call(fn, "recording", "default") == "ok"
    assert effort.call(fn, "recording", "default") == "ok" and len(fn.times) == 3, "no pause after a success"
    again = Flaky(FOREVER)
    assert effort.call(again, "recording", "default") == "default"
    assert effort.call(again, "recording", "default") == "default" and len(again.times) == 1


def test_best_effort_raises_errors_that_are_not_transient_and_does_not_pause_for_them():
    effort = BestEffort("Redis", is_down, pause_s=10)
    with pytest.raises(KeyError):
        effort.call(Flaky(FOREVER, lambda: KeyError("job")), "recording")
    assert effort.call(lambda: "ok", "recording") == "ok"


def test_best_effort_on_a_real_redis_that_does_not_answer_waits_once(bare_redis, silent_port):
    client = bare_redis(silent_port, socket_timeout=0.3)
    effort = BestEffort("Redis", redis_transient, pause_s=10)
    tries = []

    def record() -> bool:
        tries.append(1)
        return client.set("k", "v")

    assert effort.call(record, "recording", False) is False
    started = time.monotonic()
    for _ in range(10):
        assert effort.call(record, "recording", False) is False
    assert tries == [1] and time.monotonic() - started < 0.3


# --- Redis ---------------------------------------------------------------------------------------


def test_a_refused_connection_is_transient(bare_redis, closed_port):
    with pytest.raises(RedisConnectionError) as raised:
        bare_redis(closed_port).ping()
    assert redis_transient(raised.value)


def test_a_server_that_does_not_answer_is_transient(bare_redis, silent_port):
    with pytest.raises(RedisTimeoutError) as raised:
        bare_redis(silent_port, socket_timeout=0.2).ping()
    assert redis_transient(raised.value)


def test_a_server_loading_its_data_is_transient():
    assert redis_transient(BusyLoadingError("Redis is loading the dataset in memory"))


def test_an_error_the_server_answers_is_not_transient(redis_client):
    key = f"test-retry-{time.monotonic_ns()}"
    redis_client.set(key, "a string")
    try:
        with pytest.raises(ResponseError) as raised:
            redis_client.lpush(key, "x")
    finally:
        redis_client.delete(key)
    assert not redis_transient(raised.value)
    assert not redis_transient(ValueError()) and not redis_transient(OSError())


def test_redis_outage_names_the_server_without_its_password():
    outage = redis_outage("redis://:s3cret@cache.internal:6380/2", 42)
    assert outage.name == "Redis at cache.internal:6380" and outage.limit_s == 42
    assert outage.transient is redis_transient and issubclass(outage.error, Unreachable)
    assert redis_outage("redis://cache.internal/0", 1).name == "Redis at cache.internal:6379"


def test_redis_outage_gives_up_on_a_redis_that_is_gone(bare_redis, closed_port):
    outage = redis_outage(f"redis://127.0.0.1:{closed_port}/0", 0.3)
    with pytest.raises(
        Unreachable, match=rf"^Redis at 127.0.0.1:{closed_port} unreachable .* while recording the end: ConnectionError"
    ):
        outage.call(bare_redis(closed_port).ping, "recording the end")


def test_redis_outage_rides_out_a_redis_restart(tmp_path, bare_redis):
    server = RedisServer(tmp_path).start()
    try:
        client = bare_redis(server.port)
        client.set("survives", "no")  # not persisted: proof that the answer comes from the restarted server
        server.stop()
        restart = threading.Timer(0.5, server.start)
        restart.start()
        outage = redis_outage(server.url, 10)
        started = time.monotonic()
        assert outage.call(lambda: client.get("survives"), "reading") is None
        assert time.monotonic() - started >= 0.5 and outage.down_s == 0
        restart.join()
    finally:
        server.stop()


def test_a_gate_shared_by_outages_bounds_their_calls_at_once():
    gate = threading.BoundedSemaphore(2)
    outages = [Outage("server", 5, is_down, gate=gate) for _ in range(6)]
    running, most, lock = [0], [0], threading.Lock()

    def call() -> str:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return "ok"

    threads = [threading.Thread(target=o.call, args=(call, "calling")) for o in outages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2
