"""Run every script in ``examples/`` and check what it prints.

Each example is a story told through its output, so the output is the thing
to test: for every script we list lines that must appear, in this order
(other lines may come in between). Every example must have an entry here, so
a new example cannot slip in untested.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests import services

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 60.0

# Lines compared after stripping surrounding whitespace.
EXPECTED: dict[str, list[str]] = {
    "quickstart.py": [
        "running flow 'open-shop' for shop 'bakery'",
        "reserve_domain: PENDING -> RUNNING",
        "[reserve_domain] reserved bakery.example",
        "reserve_domain: RUNNING -> SUCCESS",
        "create_database: PENDING -> RUNNING",
        "[create_database] created db_bakery for bakery.example",
        "create_database: RUNNING -> SUCCESS",
        "charge_card: PENDING -> RUNNING",
        "[charge_card] charging the owner of bakery...",
        "charge_card: RUNNING -> FAILURE",
        "charge_card: FAILURE -> REVERTING",
        "[charge_card] nothing was charged, nothing to refund",
        "charge_card: REVERTING -> REVERTED",
        "create_database: SUCCESS -> REVERTING",
        "[create_database] dropped db_bakery",
        "create_database: REVERTING -> REVERTED",
        "reserve_domain: SUCCESS -> REVERTING",
        "[reserve_domain] released bakery.example",
        "reserve_domain: REVERTING -> REVERTED",
        "flow failed: card for bakery was declined",
        "final flow state: REVERTED",
        "left behind: nothing",
    ],
    "async_tasks.py": [
        "asyncio engine: 3 quotes were in flight together",
        "cheapest shop: south",
        "serial engine awaited each quote in turn; cheapest shop: south",
        "the request to east was cancelled",
        "first request: deadline passed, flow RUNNING, asked ['east', 'north', 'south']",
        "second request: asked ['east'] again, cheapest shop: south",
    ],
    "declarative_flow.py": [
        "loaded flow 'invoice' from declarative_flow.yaml: 5 tasks",
        "[usage] acme stored 120 GB in May",
        "[rate] plan business: 0.25 EUR per GB",
        "[send] mail server busy, billing@acme.example not reached",
        "[send] to billing@acme.example: Your May invoice: 30.0 EUR for 120 GB",
        "[archive] filed the invoice of acme",
        "results by task: amount=30.0, archive=archive/acme.pdf",
        "a typo in a reference, caught before anything runs:",
        "line 16, task 'amount', key 'inputs.quantity': ${usage.gigabyte}: "
        "task 'usage' result has no field 'gigabyte'",
        "a constant of the wrong type, caught before anything runs:",
        "line 13, task 'rate', key 'inputs.plan': wrong type: 2 (int) is not str",
    ],
    "dynamic_and_loops.py": [
        "[check-status] at t=0s the server is building",
        "[check-status] at t=10s the server is building",
        "[check-status] at t=20s the server is ready",
        "[snapshot-all] found volumes ['root', 'data']: spawning one snapshot each",
        "[report] backed up: snap-root, snap-data",
        "snapshot-all's result: ['snap-root', 'snap-data']",
        "check-status ran in iteration 3",
        "backing up a server with a broken volume",
        "[snapshot-data] deleted snap-data",
        "[snapshot-root] deleted snap-root",
        "[snapshot-all] undone after its snapshots",
        "backup failed: volume broken cannot be snapshotted",
        "final flow state: REVERTED",
    ],
    "linear_and_graph.py": [
        "fetch_pages and fetch_theme ran at the same time",
        "finished first (in either order): fetch_pages, fetch_theme",
        "then, in order: render -> upload -> go_live",
        "rendered pages: docs.example/about, docs.example/index",
        "live at: https://docs.example/ (v2)",
    ],
    "jobs_and_conductors.py": [
        "board: memory (this process only)",
        "posted job 'thumbnail-cat.jpg'",
        "[host-a] downloaded cat.jpg",
        "[host-a] resizing originals/cat.jpg...",
        "host-a froze mid-task; its claim runs out, nobody renews it",
        "[host-b] resizing originals/cat.jpg...",
        "[host-b] published thumbs/cat.jpg",
        "host-b: job_consumed",
        "host-a: job_lost",
        "host-a woke up: the board refused its write, so it gave the job up",
        "final flow state: SUCCESS",
        "stored thumbnail: thumbs/cat.jpg",
        "jobs left on the board: 0",
    ],
    # Without a Redis URL, the worker examples say what to start and exit 0.
    "remote_workers.py": [
        "remote_workers.py needs a Redis server: start one (redis-server --port 6379 --save '')",
        "and pass its URL: python examples/remote_workers.py redis://127.0.0.1:6379/0",
    ],
    "go_worker.py": [
        "go_worker.py needs a Redis server: start one (redis-server --port 6379 --save '')",
        "and pass its URL: python examples/go_worker.py redis://127.0.0.1:6379/0",
    ],
    "dask_scale_out.py": [
        "cluster of 2 worker processes",
        "6 tiles rendered on the cluster's workers: True",
        "none rendered in this process: True",
        "image checksum: 149998191",
        "final flow state: SUCCESS",
    ],
    "live_monitor.py": [
        "ran order-1: SUCCESS",
        "ran order-2: REVERTED",
        # The URL line names a port the system picked: not compared.
        "GET / answers 200: flows - flowkit monitor",
        "order-1: SUCCESS (reserve=SUCCESS, charge=SUCCESS, ship=SUCCESS)",
        "order-2: REVERTED (reserve=REVERTED, charge=REVERTED, ship=PENDING)",
        "monitor stopped with exit status 0",
    ],
    "timeouts_and_limits.py": [
        "exporting 6 reports on 6 threads, 2 database connections",
        "[upload] sending 6 files to the partner...",
        "[upload] revert told: atom 'upload' did not finish within its timeout of 0.2 s; "
        "the call was abandoned (cancelled where it could be) and the atom failed",
        "[upload] removed the files that reached the partner, if any",
        "run() raised TaskTimeout: 'upload' ran past 0.2 s",
        "queries at once: at most 2",
        "temporary files removed: refunds.csv, returns.csv, sales.csv, signups.csv, stock.csv, visits.csv",
        "final flow state: REVERTED",
        "the abandoned upload returned late: flowkit logged a warning and ignored its result",
    ],
    "typed_and_cached.py": [
        "quote from Dublin to 8 Rue Lepic, Paris",
        "[geocode_origin] asked the geocoding service about '1 Quay St, Dublin'",
        "[geocode_destination] asked the geocoding service about '8 Rue Lepic, Paris'",
        "from the cache: nothing",
        "destination is a Location: 48.88, 2.33",
        "778 km: 25.56 EUR",
        "quote from Dublin to 8 Rue Lepic, Paris",
        "from the cache: geocode_destination, geocode_origin",
        "destination is a Location: 48.88, 2.33",
        "778 km: 25.56 EUR",
        "quote from Dublin to 3 Via Roma, Turin",
        "[geocode_destination] asked the geocoding service about '3 Via Roma, Turin'",
        "from the cache: geocode_origin",
        "destination is a Location: 45.07, 7.69",
        "1365 km: 37.30 EUR",
        "a flow that feeds text where a Location is wanted:",
        "refused: atom 'distance' requires 'destination' (argument 'destination') as "
        "__main__.Location, but atom 'read_address' provides it as str",
    ],
    "retry_example.py": [
        "Times: retry the whole subflow up to 3 times",
        "[prepare_report] wrote report.txt",
        "[send_report] attempt 1: server timed out",
        "[prepare_report] deleted report.txt",
        "[prepare_report] wrote report.txt",
        "[send_report] attempt 2: server timed out",
        "[prepare_report] deleted report.txt",
        "[prepare_report] wrote report.txt",
        "[send_report] attempt 3: server accepted report.txt",
        "report sent; attempts used: 3",
        "ForEach: try each mirror in turn",
        "[download] mirror-a.example: connection refused",
        "[download] mirror-b.example: connection refused",
        "[download] mirror-c.example: got package.tar.gz",
        "package downloaded from mirror-c.example",
    ],
    "reverting.py": [
        "execute freeze_account",
        "execute migrate_data",
        "execute apply_quota (fails)",
        "revert  apply_quota: got its own failure (acme uses 12 GB, the new plan allows 10 GB)",
        "flow_failures['apply_quota'] is QuotaExceeded",
        "revert  migrate_data: got its result 'migrate_data-receipt-for-acme'",
        "flow_failures['apply_quota'] is QuotaExceeded",
        "revert  freeze_account: got its result 'freeze_account-receipt-for-acme'",
        "flow_failures['apply_quota'] is QuotaExceeded",
        "run() raised QuotaExceeded: acme uses 12 GB, the new plan allows 10 GB",
        "revert order: apply_quota -> migrate_data -> freeze_account",
        "send_invoice state: PENDING",
    ],
    "resume_after_crash.py": [
        "reserved stock for 42",
        "charged the card for 42",
        "shipping the parcel for 42...",
        "killed with SIGKILL mid-task",
        "first run ended with exit status -9",
        "found flow 'order-42' in the database: reserve_stock=SUCCESS, charge_card=SUCCESS, "
        "ship_parcel=RUNNING, email_customer=PENDING",
        "second run, resuming",
        "shipping the parcel for 42...",
        "e-mailed tracking number track-42",
        "steps the second run finished: ship_parcel, email_customer",
        "final flow state: SUCCESS",
        "results: order_id=42, payment=pay-42, reservation=rsv-42, tracking=track-42",
    ],
    "progress_and_listeners.py": [
        "flow import-photos: PENDING -> RUNNING",
        "task copy_photos: PENDING -> RUNNING",
        "copy_photos progress: 25%",
        "copy_photos progress: 50%",
        "copy_photos progress: 75%",
        "copy_photos progress: 100%",
        "task copy_photos: RUNNING -> SUCCESS",
        "task make_thumbnails: PENDING -> RUNNING",
        "make_thumbnails progress: 50%",
        "task make_thumbnails: RUNNING -> SUCCESS",
        "flow import-photos: RUNNING -> SUCCESS",
        "captured 2 flow and 4 task transitions",
        "final progress of copy_photos: 100%",
        "final progress of make_thumbnails: 100%",
    ],
    "why_it_reverted.py": [
        "[hold_seat] held seat 14C on LX 318",
        "[charge_card] attempt 1: declined",
        "[charge_card] attempt 2: declined",
        "[hold_seat] released seat 14C on LX 318",
        "run() raised CardDeclined: card declined for seat 14C",
        "why was hold_seat reverted? (newest cause first)",
        "hold_seat REVERTED (attempt 1, run 1): revert returned",
        "hold_seat REVERTING (attempt 1, run 1): 'charge_card' failed with CardDeclined: "
        "card declined for seat 14C in attempt 2; retry 'charge_twice' chose REVERT_ALL",
        "charge_card FAILURE (attempt 2, run 1): execute raised CardDeclined: card declined for seat 14C",
        "report: flow 'book-trip' REVERTED",
        "hold_seat: REVERTED, attempts=1, reverted",
        "charge_twice: REVERTED, attempts=2, reverted",
        "charge_card: REVERTED, attempts=2, "
        "failed: __main__.CardDeclined: card declined for seat 14C, reverted",
        "spans:",
        "flow book-trip: ERROR",
        "execute hold_seat (attempt 1)",
        "execute charge_twice (attempt 1)",
        "execute charge_card (attempt 1): ERROR __main__.CardDeclined",
        "revert charge_card (attempt 1)",
        "execute charge_twice (attempt 2)",
        "execute charge_card (attempt 2): ERROR __main__.CardDeclined",
        "revert charge_card (attempt 2)",
        "revert charge_twice (attempt 2)",
        "revert hold_seat (attempt 1)",
    ],
}

# Lines that must never appear, whatever else the example prints.
FORBIDDEN: dict[str, list[str]] = {
    # host-b carries on from what host-a saved: the finished download is not redone.
    "jobs_and_conductors.py": ["[host-b] downloaded cat.jpg", "[host-a] published thumbs/cat.jpg"],
    "resume_after_crash.py": [
        "steps the second run finished: reserve_stock, charge_card, ship_parcel, email_customer"
    ],
    "reverting.py": ["execute send_invoice", "revert  send_invoice"],
}


def _example_names() -> list[str]:
    return sorted(path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))


def _run_example(name: str) -> subprocess.CompletedProcess[str]:
    return _run_python(str(EXAMPLES / name))


def _run_python(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python *args`` from the checkout, with its output, whatever its status.

    The examples' own variables (``FLOWKIT_EXAMPLE_*``, ``FLOWKIT_GO_WORKER``) come
    from ``env_extra`` only, so a developer's shell cannot change what is tested.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWKIT_EXAMPLE_", "FLOWKIT_GO_"))}
    env.update(env_extra or {})
    # Make the checkout importable even when flowkit is not pip-installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=env,
        check=False,
    )


def _missing_in_order(expected: list[str], output: str) -> list[str]:
    """Return the expected lines not found, in order, among the output lines."""
    lines = iter(line.strip() for line in output.splitlines())
    missing = []
    for want in expected:
        for line in lines:
            if line == want:
                break
        else:
            # The search used up the output, so every later line is missing too.
            missing.append(want)
    return missing


def test_every_example_has_expected_output() -> None:
    assert _example_names(), "no examples found"
    assert sorted(EXPECTED) == _example_names()


@pytest.mark.parametrize("name", _example_names())
def test_example_runs_and_prints_its_story(name: str) -> None:
    _check_story(name, _run_example(name))


def _check_story(
    name: str, proc: subprocess.CompletedProcess[str], expected: list[str] | None = None
) -> None:
    """Fail unless ``proc`` exited 0, logged no traceback and printed ``expected`` in order.

    ``expected`` defaults to the example's EXPECTED lines.
    """
    expected = EXPECTED.get(name, []) if expected is None else expected
    report = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{report}"
    # A listener that raises is logged and skipped, never fatal: catch it here.
    assert "Traceback" not in proc.stderr, f"{name} logged an error\n{report}"
    missing = _missing_in_order(expected, proc.stdout)
    assert not missing, f"{name}: lines missing or out of order: {missing}\nstdout:\n{proc.stdout}"
    output_lines = {line.strip() for line in proc.stdout.splitlines()}
    unexpected = [line for line in FORBIDDEN.get(name, []) if line in output_lines]
    assert not unexpected, f"{name} printed {unexpected}"


def test_missing_in_order_reports_lines_out_of_order() -> None:
    output = "a\n  b\nc\n"
    assert _missing_in_order(["a", "b", "c"], output) == []
    assert _missing_in_order(["b", "a"], output) == ["a"]
    assert _missing_in_order(["a", "x", "c"], output) == ["x", "c"]


# The examples that need an extra, the module that extra brings, and the line they
# print without it. They stopped with a ModuleNotFoundError traceback, which did
# not say what to install; declarative_flow.py's loader says it itself.
NEEDS_EXTRA = {
    "typed_and_cached.py": ("pydantic", "typed_and_cached.py needs pydantic: pip install -e '.[typed]'"),
    "why_it_reverted.py": (
        "opentelemetry",
        "why_it_reverted.py needs the OpenTelemetry SDK: pip install -e '.[otel]'",
    ),
    "dask_scale_out.py": ("distributed", "dask_scale_out.py needs Dask: pip install -e '.[dask]'"),
    "declarative_flow.py": ("yaml", "reading a YAML spec needs PyYAML: pip install 'flowkit[declarative]'"),
}


@pytest.mark.parametrize("name", sorted(NEEDS_EXTRA))
def test_an_example_whose_extra_is_missing_says_what_to_install(name: str) -> None:
    module, words = NEEDS_EXTRA[name]
    # None in sys.modules makes every import of the module (and of its submodules) fail,
    # as on a base install.
    hide = (
        f"import runpy, sys; sys.modules[{module!r}] = None; "
        f"runpy.run_path({str(EXAMPLES / name)!r}, run_name='__main__')"
    )
    done = _run_python("-c", hide)
    assert done.returncode == 1, done.stderr
    assert words in done.stderr, done.stderr
    if name != "declarative_flow.py":
        assert "Traceback" not in done.stderr, done.stderr


def _board_url(kind: str, request: pytest.FixtureRequest) -> str:
    """A URL of a fresh board of ``kind`` on the session's servers (see tests/services.py)."""
    # Each board's client library is an extra: skip (fail under CI) naming it when missing.
    services.require_module({"redis": "redis", "etcd": "etcd3gw"}.get(kind, "kazoo"), f"'flowkit[{kind}]'")
    unique = uuid.uuid4().hex[:12]
    if kind == "redis":
        redis: services.RedisServer = request.getfixturevalue("redis_server")
        redis.start()
        return f"redis://127.0.0.1:{redis.port}/0?namespace=example-{unique}"
    if kind == "etcd":
        etcd: services.EtcdServer = request.getfixturevalue("etcd_server")
        return f"etcd://{etcd.host}:{etcd.port}/example-{unique}"
    zookeeper: services.ZooKeeperServer = request.getfixturevalue("zookeeper_server")
    return f"zookeeper://{zookeeper.hosts}{zookeeper.root}/{unique}/jobs"


@pytest.mark.parametrize("kind", ["redis", "zookeeper", "etcd"])
def test_jobs_and_conductors_on_a_real_board(kind: str, request: pytest.FixtureRequest) -> None:
    """The take-over story on a shared board, each conductor with a connection of its own."""
    url = _board_url(kind, request)
    name = "jobs_and_conductors.py"
    expected = [f"board: {kind}, a connection per conductor", *EXPECTED[name][1:]]
    _check_story(name, _run_python(str(EXAMPLES / name), url), expected)


def test_remote_workers_on_redis(redis_flushed_url: str) -> None:
    """A Python worker process runs the flow's tasks; the URL comes from the environment."""
    services.require_module("redis", "'flowkit[workers]'")
    proc = _run_python(
        str(EXAMPLES / "remote_workers.py"), env_extra={"FLOWKIT_EXAMPLE_REDIS": redis_flushed_url}
    )
    expected = [
        # The two sizes run at once, so only one of them is known to come before publish.
        "[worker] resized cat.jpg to 320 px",
        "[worker] published 320/cat.jpg and 1280/cat.jpg",
        "tasks ran in the worker process: True",
        "published: 320/cat.jpg, 1280/cat.jpg",
        "final flow state: SUCCESS",
        "worker stopped with exit status 0",
    ]
    _check_story("remote_workers.py", proc, expected)


def test_go_worker_on_redis(redis_flushed_url: str, go_worker_binary: str) -> None:
    """The Go worker counts the primes the Python flow asks for."""
    services.require_module("redis", "'flowkit[workers]'")
    proc = _run_python(
        str(EXAMPLES / "go_worker.py"), redis_flushed_url, env_extra={"FLOWKIT_GO_WORKER": go_worker_binary}
    )
    expected = [
        "primes below 2,000,000: 148933",
        "primes below 4,000,000: 283146",
        "primes below 6,000,000: 412849",
        "final flow state: SUCCESS",
        "Go worker stopped with exit status 0",
    ]
    _check_story("go_worker.py", proc, expected)


def test_go_worker_not_built_says_how_to_build_it(redis_flushed_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "flowkit-worker"
    proc = _run_python(
        str(EXAMPLES / "go_worker.py"), redis_flushed_url, env_extra={"FLOWKIT_GO_WORKER": str(missing)}
    )
    expected = [
        f"go_worker.py needs the Go worker, not built at {missing}: build it with",
        "(cd go_worker && go build -trimpath -o flowkit-worker ./cmd/flowkit-worker)",
    ]
    _check_story("go_worker.py", proc, expected)
