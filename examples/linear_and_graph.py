"""Graph flows: ordering inferred from what tasks need, run in parallel.

Building a static web site needs its pages and its theme, which do not depend
on each other, then a render step that needs both, then publishing, which is
a fixed two-step sequence (upload, then switch the live version).

Nobody writes "render after fetch_pages": a graph flow links a task to the
ones that provide the values it requires. The two fetches have no link, so
the parallel engine runs them at the same time; each waits on a barrier that
only opens when both are running, which proves it without timing anything.
The publishing steps sit in a linear flow nested inside the graph.
"""

from __future__ import annotations

import threading

from flowkit import engines, task
from flowkit.patterns import graph_flow, linear_flow

# Both fetches must be inside execute() at once for this barrier to open; a
# serial engine would break it after the timeout and the flow would fail.
BOTH_FETCHES_RUNNING = threading.Barrier(2, timeout=10)

# Completion order, appended under a lock because tasks run in threads.
FINISHED: list[str] = []
_FINISHED_LOCK = threading.Lock()


def _finished(name: str) -> None:
    with _FINISHED_LOCK:
        FINISHED.append(name)


class FetchPages(task.Task):
    default_provides = "pages"

    def execute(self, site: str) -> list[str]:
        BOTH_FETCHES_RUNNING.wait()
        _finished(self.name)
        return [f"{site}/index", f"{site}/about"]


class FetchTheme(task.Task):
    default_provides = "theme"

    def execute(self, site: str) -> str:
        BOTH_FETCHES_RUNNING.wait()
        _finished(self.name)
        return "minimal"


class Render(task.Task):
    default_provides = "html"

    def execute(self, pages: list[str], theme: str) -> dict[str, str]:
        _finished(self.name)
        return {page: f"<{theme}>{page}</{theme}>" for page in pages}


class Upload(task.Task):
    default_provides = "version"

    def execute(self, html: dict[str, str]) -> str:
        _finished(self.name)
        return f"v{len(html)}"


class GoLive(task.Task):
    default_provides = "url"

    def execute(self, site: str, version: str) -> str:
        _finished(self.name)
        return f"https://{site}/ ({version})"


def build_flow() -> graph_flow.Flow:
    """Return the site build; note that no link is declared by hand."""
    publish = linear_flow.Flow("publish").add(Upload("upload"), GoLive("go_live"))
    return graph_flow.Flow("build-site").add(
        # Added in an order that is *not* the run order on purpose.
        Render("render"),
        publish,
        FetchTheme("fetch_theme"),
        FetchPages("fetch_pages"),
    )


def main() -> None:
    """Run the graph on the parallel engine and show what the order was."""
    engine = engines.load(build_flow(), store={"site": "docs.example"}, engine="parallel", max_workers=4)
    engine.run()

    print("fetch_pages and fetch_theme ran at the same time")
    first_two = sorted(FINISHED[:2])
    print(f"finished first (in either order): {', '.join(first_two)}")
    print(f"then, in order: {' -> '.join(FINISHED[2:])}")
    print(f"rendered pages: {', '.join(sorted(engine.storage.fetch('html')))}")
    print(f"live at: {engine.storage.fetch('url')}")


if __name__ == "__main__":
    main()
