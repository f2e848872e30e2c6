"""Python and Go workers while their Redis restarts empty (no persistence) under a running task.

The heartbeat fails while Redis is away (connection refused), then, once it
is back, keeps failing for as long as the task runs: the restart took the
request stream and its consumer group, so claiming the in-flight entry
answers NOGROUP. Each of those beats logged a WARNING (ten a second at a
0.1 s heartbeat, for the whole task); the worker must say it once when its
heartbeat starts failing and once when it works again.
"""

from __future__ import annotations

from flowkit import states as st
from flowkit.patterns import linear_flow
from tests import services
from tests.services import RedisServer
from tests.workers.behaviour_tasks import Sleep
from tests.workers.conftest import BackgroundRun, Events, WorkerFactory, fresh_topic, load_engine

__all__: list[str] = []

#: Seconds the task sleeps: the restart falls halfway, leaving many heartbeats before it ends.
NAP = 6.0
HEARTBEAT = 0.1


def test_a_worker_says_once_that_its_heartbeat_fails_across_a_redis_restart_and_once_that_it_works_again(
    spawn_worker: WorkerFactory, redis_server: RedisServer, redis_flushed_url: str
) -> None:
    topic = fresh_topic()
    worker = spawn_worker(topic, heartbeat=HEARTBEAT, visibility_timeout=1.0)
    flow = linear_flow.Flow("nap").add(Sleep(name="nap", inject={"seconds": NAP}))
    engine = load_engine(flow, redis_flushed_url, topic, transition_timeout=30.0)
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: 0.5 in events.progress_of("nap"), 30.0, message="worker halfway through nap")
    redis_server.stop()
    try:
        services.wait_until(
            lambda: "Redis error during heartbeat" in worker.log(), 30.0, message="the heartbeat failing"
        )
    finally:
        redis_server.start()
    error = run.join(60.0)
    assert error is None, f"the run failed: {error!r}"
    assert engine.storage.get_flow_state() == st.SUCCESS
    # The task ran to its end with the heartbeat failing (NOGROUP) all along; it works
    # again once the worker reads requests anew and makes the group again.
    services.wait_until(
        lambda: "heartbeat works again" in worker.log(), 30.0, message="the heartbeat working again"
    )
    log = worker.log()
    assert log.count("Redis error during heartbeat") == 1, log[-4000:]
    assert worker.alive, log[-4000:]
