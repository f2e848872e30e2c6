"""Durable loops: what each iteration writes stays the same size however long the loop has run.

A loop keeps each body atom's earlier results (``meta["iterations"]``). Kept
whole in the atom's record, that list was written again with every write of
the record, so iteration k wrote k entries and a loop of n iterations wrote
n**2/2 of them. These tests count what is written per iteration (the bytes
handed to each backend, and on SQLite the bytes of the statements), check the
whole history reads back, and that a run stopped mid-loop (in the new form or
in the form earlier versions wrote) resumes in the iteration it was in.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from flowkit import engines, task
from flowkit import exceptions as exc
from flowkit import states as st
from flowkit.listeners.events import META_KEY, EventLog, EventLogListener
from flowkit.patterns import linear_flow, loop_flow
from flowkit.persistence import models
from flowkit.persistence._archived import CHUNK, CHUNKS_KEY, Chunker, archive_uuid
from flowkit.persistence.base import Backend, Connection
from flowkit.types.notifier import Notifier
from tests.persistence._upgraded import upgraded_backend

#: Iterations of the long loops below: enough for a quadratic cost to show
#: (iteration 320 wrote 3x what iteration 100 wrote) and to span several chunks.
LONG = 320
#: Iterations averaged over, early and late: whole chunks of history, however it is cut.
WINDOW = 64


class Count(task.Task):
    """Provides ``n``: how many times it ran in all (each iteration, once)."""

    default_provides = "n"
    done = 0
    stop_at: int | None = None

    def execute(self) -> int:
        Count.done += 1
        if Count.done == Count.stop_at:
            Count.stop_at = None
            raise KeyboardInterrupt  # the process dying mid-loop
        return Count.done


class Use(task.Task):
    def execute(self, n: int) -> int:
        return n


@pytest.fixture(autouse=True)
def _reset() -> None:
    Count.done = 0
    Count.stop_at = None


def counting_loop(iterations: int = LONG) -> linear_flow.Flow:
    """``count`` runs ``iterations`` times, then ``use`` reads its last value."""
    loop = loop_flow.Flow(
        "counting", Count("count"), until=lambda n: n >= iterations, max_iterations=iterations
    )
    return linear_flow.Flow("long").add(loop, Use("use"))


def expected_history(upto: int) -> list[dict[str, Any]]:
    """``count``'s history once iteration ``upto`` is under way."""
    return [{"iteration": i, "result": i} for i in range(1, upto)]


class _Counted:
    """Bytes of atom details handed to a backend's ``save_flow_progress``, per iteration."""

    def __init__(self, backend: Backend) -> None:
        self.total = 0
        self.marks: list[int] = []  # ``total`` as each iteration's until started
        real = backend.get_connection

        def get_connection() -> Connection:
            conn = real()
            save = conn.save_flow_progress

            def save_flow_progress(
                flow_detail: models.FlowDetail,
                atom_details: Sequence[models.AtomDetail],
                flow_changed: bool = True,
            ) -> None:
                self.total += sum(len(json.dumps(ad.to_dict(), default=str)) for ad in atom_details)
                save(flow_detail, atom_details, flow_changed)

            conn.save_flow_progress = save_flow_progress  # type: ignore[method-assign]
            return conn

        backend.get_connection = get_connection  # type: ignore[method-assign]

    def mark(self, state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == "counting^until" and state == st.RUNNING:
            self.marks.append(self.total)

    def per_iteration(self) -> list[int]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def _flat(per_iteration: list[int]) -> tuple[float, float]:
    """Mean bytes per iteration over an early window and over the last one."""
    early = statistics.mean(per_iteration[WINDOW : 2 * WINDOW])
    late = statistics.mean(per_iteration[-WINDOW:])
    return early, late


def test_each_iteration_hands_the_backend_as_much_as_the_first_ones(backend_url: str) -> None:
    with upgraded_backend(backend_url) as backend:
        counted = _Counted(backend)
        engine = engines.load(counting_loop(), backend=backend, book=models.LogBook("b"))
        engine.atom_notifier.register(Notifier.ANY, counted.mark)  # ANY
        engine.run()
        assert engine.storage.get("use") == LONG
        early, late = _flat(counted.per_iteration())
        # Quadratic writes make the late window ~4x the early one; flat writes ~1x.
        assert late < 1.5 * early, (early, late)


def test_each_iteration_writes_as_many_bytes_to_sqlite_as_the_first_ones(tmp_path: Path) -> None:
    with upgraded_backend(f"sqlite:///{tmp_path / 'runs.db'}") as backend:
        written = [0]
        marks: list[int] = []

        def statement(_conn: Any, _cursor: Any, sql: str, params: Any, _context: Any, _many: bool) -> None:
            written[0] += len(sql) + len(repr(params))

        event.listen(backend.engine, "before_cursor_execute", statement)  # type: ignore[attr-defined]

        def mark(state: str, details: dict[str, Any]) -> None:
            if details.get("task_name") == "counting^until" and state == st.RUNNING:
                marks.append(written[0])

        engine = engines.load(counting_loop(), backend=backend, book=models.LogBook("b"))
        engine.atom_notifier.register(Notifier.ANY, mark)
        engine.run()
        early, late = _flat([b - a for a, b in zip(marks, marks[1:], strict=False)])
        assert late < 1.5 * early, (early, late)


def _read(backend: Backend, flow_uuid: str) -> models.FlowDetail:
    with contextlib.closing(backend.get_connection()) as conn:
        return conn.get_flow_details(flow_uuid)


def test_the_whole_history_reads_back_from_everyupgraded_backend(backend_url: str) -> None:
    with upgraded_backend(backend_url) as backend:
        engine = engines.load(counting_loop(), backend=backend, book=models.LogBook("b"))
        engine.run()
        detail = _read(backend, engine.storage.flow_uuid)
        stored = {ad.name: ad for ad in detail}
        # What inspection tools list: the flow's atoms, nothing else.
        assert sorted(stored) == ["count", "counting^until", "use"]
        assert len(detail) == 3
        count = stored["count"]
        assert count.meta["iteration"] == LONG
        assert count.meta["iterations"] == expected_history(LONG)
        with contextlib.closing(backend.get_connection()) as conn:
            alone = conn.get_atom_details(count.uuid)
            listed = {ad.name: ad for ad in conn.get_atoms_for_flow(engine.storage.flow_uuid)}
        assert alone.meta["iterations"] == expected_history(LONG)
        assert sorted(listed) == ["count", "counting^until", "use"]
        assert listed["count"].meta == count.meta
        # The engine's own view (storage, and its flow detail) holds it whole too.
        assert engine.storage.get_atom_metadata("count")["iterations"] == expected_history(LONG)


def test_a_long_loop_stopped_mid_way_resumes_in_its_iteration(backend_url: str) -> None:
    stop_at = 3 * WINDOW // 2 + 5
    with upgraded_backend(backend_url) as backend:
        Count.stop_at = stop_at
        engine = engines.load_from_factory(counting_loop, backend=backend, book=models.LogBook("b"))
        with pytest.raises(KeyboardInterrupt):
            engine.run()
        detail = _read(backend, engine.storage.flow_uuid)
        count = next(ad for ad in detail if ad.name == "count")
        assert count.meta["iteration"] == stop_at
        assert count.meta["iterations"] == expected_history(stop_at)
        # The interrupted call is made again: Count.done steps back to the last stored value.
        Count.done = stop_at - 1
        resumed = engines.load_from_detail(detail, backend=backend)
        resumed.run()
        assert resumed.storage.get_flow_state() == st.SUCCESS
        assert resumed.storage.get("use") == LONG
        final = {ad.name: ad for ad in _read(backend, engine.storage.flow_uuid)}
        assert final["count"].meta["iterations"] == expected_history(LONG)
        assert sorted(final) == ["count", "counting^until", "use"]


def _old_form_detail(stop_at: int) -> models.FlowDetail:
    """A flow stopped in iteration ``stop_at`` as earlier versions stored it: the history whole in meta."""
    from flowkit.engines import helpers

    fd = models.FlowDetail("long", "5e1f3a4c-0000-4000-8000-000000000001")
    fd.state = st.RUNNING
    helpers.save_factory_details(fd, counting_loop, (), {})
    count = models.TaskDetail("count", "5e1f3a4c-0000-4000-8000-000000000002")
    count.state = st.PENDING
    count.version = "1.0"
    count.meta = {"iteration": stop_at, "iterations": expected_history(stop_at), "progress": 0.0}
    until = models.TaskDetail("counting^until", "5e1f3a4c-0000-4000-8000-000000000003")
    until.state = st.PENDING
    until.version = "1.0"
    until.meta = {"iteration": stop_at, "progress": 0.0}
    use = models.TaskDetail("use", "5e1f3a4c-0000-4000-8000-000000000004")
    use.version = "1.0"
    for ad in (count, until, use):
        fd.add(ad)
    return fd


def test_a_loop_stored_in_the_old_form_resumes_and_keeps_its_history(backend_url: str) -> None:
    stop_at = WINDOW + 3
    with upgraded_backend(backend_url) as backend:
        book = models.LogBook("old")
        book.add(_old_form_detail(stop_at))
        with contextlib.closing(backend.get_connection()) as conn:
            conn.save_logbook(book)
        detail = _read(backend, "5e1f3a4c-0000-4000-8000-000000000001")
        assert next(ad for ad in detail if ad.name == "count").meta["iterations"] == expected_history(stop_at)
        Count.done = stop_at - 1
        resumed = engines.load_from_detail(detail, backend=backend)
        resumed.run()
        assert Count.done == LONG  # iterations stop_at..LONG ran, none before
        assert resumed.storage.get("use") == LONG
        final = {ad.name: ad for ad in _read(backend, detail.uuid)}
        assert sorted(final) == ["count", "counting^until", "use"]
        assert final["count"].meta["iterations"] == expected_history(LONG)


def test_the_event_log_of_a_long_loop_is_written_in_chunks_and_reads_back_whole(backend_url: str) -> None:
    with upgraded_backend(backend_url) as backend:
        counted = _Counted(backend)
        engine = engines.load(counting_loop(), backend=backend, book=models.LogBook("b"))
        engine.atom_notifier.register(Notifier.ANY, counted.mark)
        with EventLogListener(engine):
            engine.run()
        early, late = _flat(counted.per_iteration())
        assert late < 1.5 * early, (early, late)
        live = engine.storage.get_atom_metadata("count")[META_KEY]
        assert [e["state"] for e in live[:4]] == [st.RUNNING, st.SUCCESS, st.PENDING, st.RUNNING]
        detail = _read(backend, engine.storage.flow_uuid)
        count = next(ad for ad in detail if ad.name == "count")
        assert count.meta[META_KEY] == live
        assert len(live) == 3 * LONG - 1  # RUNNING, SUCCESS, PENDING each iteration but the last
        # What `flowkit flows why` and the report read: every event, in order.
        log = EventLog.from_flow_detail(detail)
        assert [e.seq for e in log.of("count")] == [e["seq"] for e in live]


def test_a_chunk_is_handed_over_once_unless_the_list_is_replaced() -> None:
    chunker = Chunker()
    owner = models.TaskDetail("count", "5e1f3a4c-0000-4000-8000-00000000000a")
    entries = [{"i": i} for i in range(CHUNK - 1)]
    owner.meta = {"iterations": entries}

    def hand_over() -> list[str]:
        out, marks = chunker.stored_form([owner])
        chunker.commit(marks)
        return [ad.name for ad in out]

    assert hand_over() == ["count"]  # short: as it always was stored
    entries.append({"i": CHUNK - 1})
    assert hand_over() == ["count^iterations#0", "count"]
    entries.append({"i": CHUNK})
    assert hand_over() == ["count"]
    owner.meta = {"iterations": [*entries]}  # a copy of the same entries (as the event log makes)
    assert hand_over() == ["count"]
    owner.meta = {"iterations": [{"i": i} for i in range(2 * CHUNK)]}  # other entries
    assert hand_over() == ["count^iterations#0", "count^iterations#1", "count"]
    out, _marks = chunker.stored_form([owner])
    assert out[-1].meta == {"iterations": [], CHUNKS_KEY: {"iterations": 2}}
    assert owner.meta["iterations"] == [
        {"i": i} for i in range(2 * CHUNK)
    ]  # the caller's detail is untouched


def test_the_event_log_starts_chunking_at_the_chunk_size() -> None:
    from flowkit.listeners import events

    assert events._CHUNKED_FROM == CHUNK


def test_an_owner_whose_chunks_are_missing_is_shown_as_stored() -> None:
    fd = models.FlowDetail("f", "5e1f3a4c-0000-4000-8000-00000000000b")
    owner = models.TaskDetail("count", "5e1f3a4c-0000-4000-8000-00000000000c")
    owner.meta = {"iterations": [{"iteration": 33}], CHUNKS_KEY: {"iterations": 1}}
    fd.add(owner)
    assert next(iter(fd)).meta[CHUNKS_KEY] == {"iterations": 1}  # not a history silently missing 32 entries


def test_destroying_the_logbook_takes_the_chunks_with_it(backend_url: str) -> None:
    with upgraded_backend(backend_url) as backend:
        book = models.LogBook("b")
        engine = engines.load(counting_loop(3 * CHUNK), backend=backend, book=book)
        engine.run()
        owner = engine.storage.run_state.records["count"].uuid
        chunks = [archive_uuid(owner, "iterations", i) for i in range(2)]
        with contextlib.closing(backend.get_connection()) as conn:
            assert conn.get_atom_details(chunks[0]).results[0] == {"iteration": 1, "result": 1}
            conn.destroy_logbook(book.uuid)
            for uuid in chunks:
                with pytest.raises(exc.NotFound):
                    conn.get_atom_details(uuid)


def test_a_chunk_of_an_atom_with_a_long_name_keeps_to_the_name_column() -> None:
    chunker = Chunker()
    owner = models.TaskDetail("x" * 255, "5e1f3a4c-0000-4000-8000-00000000000d")
    owner.meta = {"iterations": list(range(CHUNK))}
    out, _marks = chunker.stored_form([owner])
    assert len(out[0].name) == 255
    assert out[0].name.endswith("^iterations#0")


# --- a run stopped as its loop goes on to the next iteration ------------------------------------


class Tally(task.Task):
    """Provides ``tally``: how many body calls were made in all, this one included."""

    default_provides = "tally"
    calls: list[str] = []

    def execute(self) -> int:
        Tally.calls.append(self.name)
        return len(Tally.calls)


def bounded_loop() -> linear_flow.Flow:
    """A loop whose until never holds: its body (a, b) runs exactly 3 times, then it is exhausted."""
    loop = loop_flow.Flow("bounded", Tally("a"), Tally("b"), until=lambda tally: False, max_iterations=3)
    return linear_flow.Flow("stopped-at-verdict").add(loop)


def _run_to_the_end(engine: Any) -> None:
    with pytest.raises(exc.LoopExhausted, match="bounded"):
        engine.run()


def _loop_meta(detail: models.FlowDetail) -> dict[str, tuple[Any, Any]]:
    return {ad.name: (ad.meta.get("iteration"), ad.meta.get("iterations")) for ad in detail}


@pytest.mark.parametrize("atom", ["a", "b", "bounded^until"])
@pytest.mark.parametrize("verdict", [1, 2])
def test_a_run_stopped_as_its_loop_resets_resumes_with_the_iteration_it_went_on_to(
    backend_url: str, atom: str, verdict: int
) -> None:
    # The body's reset was saved without the next iteration number: a listener
    # interrupting the run as it heard the reset left the body PENDING in the old
    # iteration, and the resume ran the body max_iterations times more.
    with upgraded_backend(backend_url) as backend:
        Tally.calls = []
        reference = engines.load_from_factory(bounded_loop, backend=backend, book=models.LogBook("r"))
        _run_to_the_end(reference)
        expected_calls = list(Tally.calls)
        expected = _loop_meta(_read(backend, reference.storage.flow_uuid))
        assert expected_calls == ["a", "b"] * 3

        Tally.calls = []
        engine = engines.load_from_factory(bounded_loop, backend=backend, book=models.LogBook("s"))
        heard: list[str] = []

        def stop_at_the_reset(state: str, details: dict[str, Any]) -> None:
            if state == st.PENDING and details.get("old_state") is not None:
                heard.append(details["task_name"])
                if details["task_name"] == atom and heard.count(atom) == verdict:
                    raise KeyboardInterrupt  # the process dying as its loop goes on

        engine.atom_notifier.register(Notifier.ANY, stop_at_the_reset)
        with pytest.raises(KeyboardInterrupt):
            engine.run()
        stored = {ad.name: ad for ad in _read(backend, engine.storage.flow_uuid)}
        # The reset is stored whole, with the iteration it goes on to.
        went_on = (st.PENDING, verdict + 1)
        assert {name: (ad.state, ad.meta.get("iteration")) for name, ad in stored.items()} == dict.fromkeys(
            ("a", "b", "bounded^until"), went_on
        )
        resumed = engines.load_from_detail(_read(backend, engine.storage.flow_uuid), backend=backend)
        _run_to_the_end(resumed)
        assert Tally.calls == expected_calls  # never past max_iterations
        assert _loop_meta(_read(backend, engine.storage.flow_uuid)) == expected
