"""The Python the pages of ``doc/`` and ``README.rst`` show, run as a reader pastes it.

Each page's Python blocks run in page order in one namespace of their own, in
a fresh temporary directory (where ``sqlite:///flows.db`` lands), as a reader
would paste them one after the other: a fragment may use what an earlier
block of its page defined. A renamed option, a moved name or a behaviour that
changed fails here instead of in the reader's interpreter.

Which blocks are Python: a ``.. code-block:: python`` always (it must
compile); a ``::`` block when it compiles as Python and does something, that
is has a statement other than a bare expression, or a call (so ``tools/test.sh``
and a JSON record, which parse as Python expressions, are not run). Shell
transcripts (``$ ...``), program output and tracebacks do not compile.
``.. testcode::`` blocks are run by Sphinx's doctest builder instead
(``tools/test.sh``), and the command lines by ``tests/cli/test_doc_transcripts.py``.
A block runs here on OpenTelemetry's no-op tracer; what ``doc/tracing.rst``'s
block traces is checked under the SDK by ``tests/test_doc_tracing.py``.

What a page takes as the reader's own is given: their modules (``myapp.tasks``)
by :data:`MODULES`, written into the directory; what their session holds (a
``flow``, an imported ``engines``, a run to read back) by :data:`GIVEN`, run
just before the block that uses it; a YAML spec shown as ``name: NAME`` is
saved as ``NAME.yaml``, the file the page's Python loads. Where a page shows
a Redis server, the session's runs instead (:data:`REDIS`). A block that
cannot run as shown is listed in :data:`NOT_RUN` with the reason; it is still
compiled, and its imports of flowkit still run (so a renamed name fails, and
later blocks get them). An entry of :data:`GIVEN` or :data:`NOT_RUN` whose
block is gone fails the test, so the tables cannot rot.
"""

from __future__ import annotations

import ast
import contextlib
import re
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import CodeType
from typing import NamedTuple, TypeVar

import pytest

from tests.doc_blocks import LiteralBlock, literal_blocks

T = TypeVar("T")

# The pages that show a TaskFlow import (README.rst, migrating.rst) make oslo_utils warn.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:oslo_utils.eventletutils")

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "doc"

#: Every page whose Python is run, by the name the tables below know it by: its file name.
PAGE_FILES: dict[str, Path] = {path.name: path for path in [*sorted(DOC.glob("*.rst")), ROOT / "README.rst"]}


def _shown(page: str) -> str:
    """Where ``page`` is, as a reader of the repository names it (``doc/engines.rst``)."""
    return PAGE_FILES[page].relative_to(ROOT).as_posix()


#: The reader's own modules a page names, written into its directory: page -> {module: source}.
MODULES: dict[str, dict[str, str]] = {
    "README.rst": {
        "myapp.flows": """
            from flowkit import task
            from flowkit.patterns import linear_flow

            class CreateVolume(task.Task):
                default_provides = "volume_id"

                def execute(self, size_gb):
                    return f"vol-{size_gb}"

            def make_flow():
                return linear_flow.Flow("boot").add(CreateVolume())
        """,
    },
    "declarative.rst": {
        "myapp.tasks": """
            from flowkit import task

            class FetchPrices(task.Task):
                def execute(self, symbol):
                    return {"symbol": symbol, "close": 180.5}

            class FetchRate(task.Task):
                def execute(self, currency):
                    return 0.92

            class Convert(task.Task):
                def execute(self, amount, rate):
                    return amount * rate

            class Notify(task.Task):
                def execute(self, text):
                    print(text)

            class Extract(task.Task):
                def execute(self, day):
                    return [{"day": day, "sales": 3}]

            class CountRows(task.Task):
                def execute(self, data):
                    return len(data)

            class CheckSchema(task.Task):
                def execute(self, data):
                    assert all("day" in row for row in data)

            class Store(task.Task):
                def execute(self, data):
                    pass

            class Report(task.Task):
                def execute(self, rows):
                    print(f"{rows} rows")
        """,
    },
    "engines.rst": {
        "myapp.tasks": """
            from flowkit import task
            from flowkit.patterns import unordered_flow

            class Square(task.Task):
                def execute(self, n):
                    return n * n

            class LookUp(task.Task):
                def execute(self):
                    return {}["missing"]

            def build_flow():
                return unordered_flow.Flow("squares").add(
                    *(Square(f"square_{n}", inject={"n": n}) for n in range(4))
                )
        """,
    },
    "persistence.rst": {
        "myapp.flows": """
            from flowkit import task
            from flowkit.patterns import linear_flow

            class Ship(task.Task):
                def execute(self, order_id):
                    return f"parcel for order {order_id}"

            def build_flow(order_id):
                return linear_flow.Flow(f"order-{order_id}").add(Ship("ship"))
        """,
    },
    "workers.rst": {
        "myservice.tasks": """
            from flowkit import task

            class CreateVolume(task.Task):
                default_provides = "volume_id"

                def execute(self, size_gb):
                    return f"vol-{size_gb}"
        """,
    },
}

#: A flow of one task, for pages that run "your flow" (``flow``) and name no task of it.
_A_FLOW = """
    from flowkit import engines, task
    from flowkit.patterns import linear_flow

    class Reserve(task.Task):
        def execute(self, amount=1, order_id=None):
            return amount

    flow = linear_flow.Flow("shop").add(Reserve("reserve"))
"""

#: What the page takes as the reader's own, run just before a block: (page, the block's start) -> code.
#: A block's start is its first line, or as many of its first lines as tell it from the page's others.
GIVEN: dict[tuple[str, str], str] = {
    (
        "declarative.rst",
        'flow = declarative.load_flow(uploaded, tasks=["myapp.tasks.", "other.mod.Fetch"])',
    ): """
        uploaded = "pricing.yaml"
    """,
    ("dynamic.rst", "@dynamic.spawnable"): """
        from flowkit import dynamic
        from flowkit.patterns import unordered_flow
    """,
    ("engines.rst", "try:"): """
        from flowkit import exceptions
        from flowkit.patterns import linear_flow
        from myapp.tasks import LookUp

        flow = linear_flow.Flow("lookup").add(LookUp())
        engine = engines.load(flow, engine="parallel", executor="processes", max_workers=1)
    """,
    ("events.rst", "from flowkit.listeners.events import EventLog, EventLogListener"): _A_FLOW
    + """
    from flowkit.persistence import backends

    backend = backends.fetch({"connection": "memory://"})
    """,
    ("events.rst", "log = EventLog.from_flow_detail(flow_detail)"): """
        import contextlib

        with contextlib.closing(backend.get_connection()) as conn:
            flow_detail = conn.get_flow_details(engine.storage.flow_uuid)
    """,
    ("jobs.rst", "from flowkit.jobs import backends as job_backends"): """
        from flowkit.persistence import backends, models

        persistence = backends.fetch({"connection": "memory://"})
        book = models.LogBook("vms")
    """,
    ("jobs.rst", "from flowkit import conductors"): """
        _after_page.append(board.close)
    """,
    (
        "migrating.rst",
        "from flowkit.persistence.backends.sqlalchemy.from_taskflow import import_taskflow",
    ): """
        import contextlib

        from taskflow.persistence import backends as taskflow_backends, models as taskflow_models

        taskflow_url = "sqlite:///taskflow.db"
        taskflow_backend = taskflow_backends.fetch({"connection": taskflow_url})
        with contextlib.closing(taskflow_backend.get_connection()) as conn:
            conn.upgrade()
            taskflow_book = taskflow_models.LogBook("orders")
            taskflow_book.add(taskflow_models.FlowDetail("order-42", uuid=taskflow_book.uuid))
            conn.save_logbook(taskflow_book)
        flowkit_url = "sqlite:///flowkit.db"
    """,
    ("persistence.rst", "with contextlib.closing(backend.get_connection()) as conn:\n    for name"): _A_FLOW
    + """
    import contextlib

    from flowkit.persistence import backends, models

    backend = backends.fetch({"connection": "sqlite:///flows.db"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    engine = engines.load(flow, backend=backend)
    engine.run()
    flow_uuid = engine.storage.flow_uuid
    """,
    ("persistence.rst", 'book = models.LogBook("orders")'): """
        from myapp.flows import build_flow
    """,
    ("persistence.rst", "with contextlib.closing(backend.get_connection()) as conn:\n    flow_detail"): """
        flow_uuid = engine.storage.flow_uuid  # the order's run, to resume
    """,
    ("README.rst", "from flowkit import task\n\nclass CreateVolume"): """
        class Cloud:
            \"\"\"The reader's cloud API, as the tour's tasks call it.\"\"\"

            def __init__(self):
                self.volumes = set()

            def create_volume(self, size_gb):
                self.volumes.add(f"vol-{len(self.volumes) + 1}")
                return f"vol-{len(self.volumes)}"

            def delete_volume(self, volume_id):
                self.volumes.discard(volume_id)

        cloud = Cloud()
    """,
    ("README.rst", "from flowkit.patterns import graph_flow, linear_flow"): """
        class AttachVolume(task.Task):
            def execute(self, volume_id):
                pass

        class StartServer(task.Task):
            default_provides = "server_id"

            def execute(self, volume_id):
                return f"server on {volume_id}"
    """,
    ("reports.rst", "from flowkit.listeners.events import EventLogListener"): _A_FLOW
    + """
    import json

    from flowkit.persistence import backends

    backend = backends.fetch({"connection": "memory://"})
    persisted = engines.load(flow, store={"amount": 5}, backend=backend)
    persisted.run()
    conn, uuid = backend.get_connection(), persisted.storage.flow_uuid
    """,
    ("tracing.rst", "from opentelemetry import trace"): _A_FLOW,
    ("typed.rst", "class Convert(task.Task):"): """
        from flowkit import task
    """,
    ("workers.rst", "engine = engines.load(\n    flow,"): """
        import threading

        from flowkit import engines, task
        from flowkit.engines.worker_based.worker import Worker
        from flowkit.patterns import linear_flow
        from myservice.tasks import CreateVolume

        flow = linear_flow.Flow("boot").add(CreateVolume(inject={"size_gb": 10}))
        volumes = Worker(topic="volumes", tasks=["myservice.tasks"], url="redis://redis.internal:6379/0")
        threading.Thread(target=volumes.run, daemon=True).start()
        _after_page.append(volumes.stop)
        assert volumes.wait(timeout=30), "the worker serving the page's flow did not start"
    """,
}

#: Where a page shows a Redis server, the session's stands in: page -> {text shown: text run}.
#: ``{url}`` and ``{port}`` in the text run are the session server's.
REDIS: dict[str, dict[str, str]] = {
    "jobs.rst": {'"port": 6379': '"port": {port}'},
    "workers.rst": {"redis://redis.internal:6379/0": "{url}"},
}

#: (page, the block's start) -> why the block is not run.
NOT_RUN: dict[tuple[str, str], str] = {
    ("jobs.rst", "from flowkit import conductors"): "conductor.run() serves the board until stopped",
    ("jobs.rst", "from distributed import Client"): "needs a Dask scheduler at tcp://scheduler:8786",
    (
        "workers.rst",
        'worker = Worker(topic="volumes", tasks=["myservice.tasks"], url="redis://redis.internal:6379/0")',
    ): "worker.run() serves until stopped",
}


class Snippet(NamedTuple):
    """A Python block of a page."""

    page: str
    block: LiteralBlock

    def listed_in(self, table: Mapping[tuple[str, str], T]) -> T | None:
        """What ``table`` says of this block: the entry of its page whose text the block starts with."""
        for (page, start), entry in table.items():
            if page == self.page and self.block.text.startswith(start):
                return entry
        return None

    @property
    def where(self) -> str:
        return f"{_shown(self.page)}:{self.block.line}"

    def compiled(self, code: str) -> CodeType:
        """``code`` (the block's, changed or cut) compiled so tracebacks name the page's lines."""
        return compile("\n" * (self.block.line - 1) + code, _shown(self.page), "exec")


def _does_something(tree: ast.Module) -> bool:
    """Whether parsed code has a statement besides bare expressions, or calls anything."""
    if any(not isinstance(statement, ast.Expr) for statement in tree.body):
        return True
    return any(isinstance(node, ast.Call) for node in ast.walk(tree))


def _is_python(block: LiteralBlock) -> bool:
    if block.language == "python":
        return True
    if block.language is not None:
        return False
    try:
        tree = ast.parse(block.text)
    except SyntaxError:
        return False
    return _does_something(tree)


def _snippets(page: str) -> list[Snippet]:
    text = PAGE_FILES[page].read_text(encoding="utf-8")
    return [Snippet(page, block) for block in literal_blocks(text) if _is_python(block)]


PAGES = sorted(page for page in PAGE_FILES if _snippets(page))


def _flowkit_imports(code: str) -> str:
    """The top-level flowkit imports of ``code``, on their lines (the rest blanked)."""
    tree = ast.parse(code)
    kept = [
        node
        for node in tree.body
        if (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "flowkit")
        or (isinstance(node, ast.Import) and all(a.name.split(".")[0] == "flowkit" for a in node.names))
    ]
    lines = code.splitlines()
    keep = {n for node in kept for n in range(node.lineno - 1, node.end_lineno or node.lineno)}
    return "\n".join(line if n in keep else "" for n, line in enumerate(lines))


@contextlib.contextmanager
def _reader_session(directory: Path) -> Iterator[None]:
    """Work in ``directory``, importable as a reader's working directory is; undo it all after.

    Modules imported from there (a page's placeholder ``myapp``) are forgotten,
    so the next page writes and imports its own.
    """
    modules = set(sys.modules)
    sys.path.insert(0, str(directory))
    try:
        with contextlib.chdir(directory):
            yield
    finally:
        sys.path.remove(str(directory))
        for name in set(sys.modules) - modules:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(str(directory)):
                del sys.modules[name]


def _write_modules(modules: dict[str, str], directory: Path) -> None:
    """Write each ``module: source`` as the reader's file, packages made on the way."""
    for module, source in modules.items():
        *packages, name = module.split(".")
        folder = directory.joinpath(*packages)
        folder.mkdir(parents=True, exist_ok=True)
        for depth in range(len(packages)):
            directory.joinpath(*packages[: depth + 1], "__init__.py").touch()
        (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")


def _save_named_specs(page: str, directory: Path) -> None:
    """Save each YAML block of ``page`` that starts with ``name: NAME`` as ``NAME.yaml``.

    That is the file a reader saves it as: the page's Python then loads it by
    that name, the flow's name being the file's stem by default.
    """
    for block in literal_blocks(PAGE_FILES[page].read_text(encoding="utf-8")):
        first = block.text.splitlines()[0]
        if block.language == "yaml" and first.startswith("name: "):
            (directory / f"{first.removeprefix('name: ').strip()}.yaml").write_text(
                block.text, encoding="utf-8"
            )


def _redis_stand_ins(page: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """What the Redis servers ``page`` shows become: the session's server, emptied."""
    if page not in REDIS:
        return {}
    url = request.getfixturevalue("redis_flushed_url")
    server = request.getfixturevalue("redis_server")
    return {shown: run.format(url=url, port=server.port) for shown, run in REDIS[page].items()}


@contextlib.contextmanager
def _calling_after(after_page: list[Callable[[], object]]) -> Iterator[None]:
    """Call what the page's given code asked to call after it (stop a worker it started)."""
    try:
        yield
    finally:
        for call in reversed(after_page):
            call()


@pytest.mark.parametrize("page", PAGES)
def test_the_python_of_the_page_runs(page: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    stand_ins = _redis_stand_ins(page, request)
    _write_modules(MODULES.get(page, {}), tmp_path)
    _save_named_specs(page, tmp_path)
    after_page: list[Callable[[], object]] = []
    namespace: dict[str, object] = {"__name__": "__main__", "_after_page": after_page}
    with _reader_session(tmp_path), _calling_after(after_page):
        for snippet in _snippets(page):
            given, text = textwrap.dedent(snippet.listed_in(GIVEN) or ""), snippet.block.text
            for shown, run in stand_ins.items():
                given, text = given.replace(shown, run), text.replace(shown, run)
            exec(compile(given, f"<GIVEN of {snippet.where}>", "exec"), namespace)
            code = snippet.compiled(_flowkit_imports(text) if snippet.listed_in(NOT_RUN) else text)
            try:
                exec(code, namespace)
            except Exception as exc:
                raise AssertionError(f"the block at {snippet.where} failed:\n{text}") from exc


@pytest.mark.parametrize("table", [GIVEN, NOT_RUN], ids=["GIVEN", "NOT_RUN"])
def test_every_block_listed_is_on_its_page_once(table: Mapping[tuple[str, str], object]) -> None:
    # A block rewritten or removed must not leave its entry behind, nor an entry stand for two blocks.
    found = {
        (page, start): [s.where for s in _snippets(page) if s.block.text.startswith(start)]
        if page in PAGE_FILES
        else []
        for page, start in table
    }
    assert {key: where for key, where in found.items() if len(where) != 1} == {}


#: A line only Python starts so: a block holding one is Python, whether it compiles or not.
_PYTHON_LINE = re.compile(r"(from [\w.]+ import |import \w|def \w|async def \w|class \w|@\w)")


def test_no_python_block_is_passed_over_for_a_syntax_error() -> None:
    # The rule above takes a '::' block that does not compile for a transcript or output; a Python
    # block broken by a typo would be passed over without a word, so it must not read as Python.
    broken = [
        f"{_shown(page)}:{block.line}"
        for page, path in PAGE_FILES.items()
        for block in literal_blocks(path.read_text(encoding="utf-8"))
        if block.language is None
        and not _is_python(block)
        and any(_PYTHON_LINE.match(line) for line in block.text.splitlines())
    ]
    assert broken == []


def test_every_page_with_stand_ins_has_python_blocks() -> None:
    assert sorted((set(MODULES) | set(REDIS)) - set(PAGES)) == []
