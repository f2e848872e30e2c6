"""``engine:`` in a spec: the engine its author meant, applied by load_spec's callers and ``flowkit run``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from flowkit import declarative, engines, exceptions
from flowkit.persistence import backends
from tests.cli.conftest import flowkit_cmd
from tests.declarative.test_load import PRICING

T = "tests.declarative.tasks"
TASKS = {
    "a": {"task": f"{T}:Count", "inputs": {"n": 1}},
    "b": {"task": f"{T}:Count", "inputs": {"n": "${a}"}},
}


def test_a_spec_names_its_engine_and_options() -> None:
    loaded = declarative.load_spec(
        {"name": "f", "engine": {"name": "parallel", "max_workers": 3}, "tasks": TASKS}
    )
    assert (loaded.engine, loaded.engine_options) == ("parallel", {"max_workers": 3})
    engine = engines.load(loaded.flow, **loaded.engine_kwargs())
    assert type(engine).__name__ == "ParallelEngine"
    assert engine.options["max_workers"] == 3
    engine.run()
    by_hand = engines.load(
        declarative.load_flow({"name": "f", "tasks": TASKS}), engine="parallel", max_workers=3
    )
    by_hand.run()
    assert engine.storage.fetch_all() == by_hand.storage.fetch_all() == {"a": 1, "b": 1}


def test_the_caller_overrides_the_spec() -> None:
    loaded = declarative.load_spec(
        {"name": "f", "engine": {"name": "parallel", "max_workers": 3}, "tasks": TASKS}
    )
    assert loaded.engine_kwargs("serial", max_workers=5, strict=False) == {
        "engine": "serial",
        "max_workers": 5,
        "strict": False,
    }
    assert loaded.engine_kwargs() == {"engine": "parallel", "max_workers": 3}


def test_a_name_alone_and_no_engine() -> None:
    assert declarative.load_spec({"name": "f", "engine": "asyncio", "tasks": TASKS}).engine_kwargs() == {
        "engine": "asyncio"
    }
    plain = declarative.load_spec({"name": "f", "tasks": TASKS})
    assert (plain.engine, plain.engine_options, plain.engine_kwargs()) == (None, {}, {"engine": "serial"})
    # load_flow takes a spec with engine: and leaves it to whoever runs the flow
    assert engines.run(declarative.load_flow({"name": "f", "engine": "parallel", "tasks": TASKS})) == {
        "a": 1,
        "b": 1,
    }


@pytest.mark.parametrize(
    ("engine", "key", "reason"),
    [
        (3, "engine", "'engine' must be an engine name or URI"),
        ("", "engine", "'engine' must be an engine name or URI"),
        ({"name": ""}, "engine.name", "non-empty string"),
        ({"backend": "x"}, "engine.backend", "for the code running the flow"),
        ({"store": {}}, "engine.store", "for the code running the flow"),
        ({"max-workers": 2}, "engine.max-workers", "not a keyword name"),
    ],
)
def test_bad_engine_settings_name_the_key(tmp_path: Path, engine: Any, key: str, reason: str) -> None:
    import json

    path = tmp_path / "f.json"
    path.write_text(json.dumps({"name": "f", "engine": engine, "tasks": TASKS}, indent=1))
    for load in (declarative.load_flow, declarative.load_spec):
        with pytest.raises(exceptions.FlowSpecError) as info:
            load(path)
        assert (info.value.task, info.value.key) == (None, key)
        assert reason in info.value.reason
        assert str(info.value).startswith(str(path))


def recorded_meta(url: str) -> dict[str, Any]:
    with backends.backend(url) as backend, contextlib.closing(backend.get_connection()) as conn:
        metas = [flow.meta or {} for book in conn.get_logbooks() for flow in book]
    assert len(metas) == 1
    return metas[0]


@pytest.mark.parametrize(
    ("args", "engine", "options"),
    [([], "parallel", {"max_workers": 2}), (["--engine", "serial"], "serial", {"max_workers": 2})],
)
def test_flowkit_run_applies_the_spec_engine_under_engine_flag(
    tmp_path: Path, args: list[str], engine: str, options: dict[str, Any]
) -> None:
    spec = tmp_path / "pricing.yaml"
    spec.write_text(
        PRICING.replace("name: pricing\n", "name: pricing\nengine: {name: parallel, max_workers: 2}\n")
    )
    url = f"sqlite:///{tmp_path}/flows.db"
    done = flowkit_cmd("run", str(spec), "--connection", url, *args)
    assert done.returncode == 0, done.stderr
    assert "SUCCESS" in done.stdout
    meta = recorded_meta(url)
    assert (meta["engine"], meta["engine_options"]) == (engine, options)
    # resume rebuilds the engine from what the run recorded, options included
    resumed = flowkit_cmd("flows", "resume", "pricing", "--connection", url)
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.parametrize(
    ("engine", "args", "blamed"),
    [
        ("{name: warp}", [], "line 1, key 'engine': Could not find engine 'warp'"),
        ("warp", [], "line 1, key 'engine': Could not find engine 'warp'"),
        ("{name: parallel, max_workers: -3}", [], "line 1, key 'engine.max_workers': max_workers must be"),
        # what --engine gives is blamed on --engine, even over a spec's engine
        ("{name: parallel}", ["--engine", "warp"], "--engine 'warp': Could not find engine 'warp'"),
        ("{name: parallel}", ["--engine", "parallel://?max_workers=-3"], "--engine 'parallel://"),
    ],
)
def test_flowkit_run_blames_a_bad_engine_on_the_spec_that_names_it(
    tmp_path: Path, engine: str, args: list[str], blamed: str
) -> None:
    # It said "--engine 'warp': ..." of an engine only the spec named, with no file or line.
    spec = tmp_path / "pricing.yaml"
    spec.write_text(f"engine: {engine}\n" + PRICING)
    url = f"sqlite:///{tmp_path}/flows.db"
    done = flowkit_cmd("run", str(spec), "--connection", url, *args)
    assert done.returncode == 2, done.stderr
    assert blamed in done.stderr, done.stderr
    if not args:
        assert f"target '{spec}': {spec}, {blamed}" in done.stderr


def test_the_resume_plan_applies_the_engine_options_the_spec_recorded(tmp_path: Path) -> None:
    # The dry run read only --engine's (or the run's) engine URI: a spec's never_resolve,
    # which the real resume applies, was left out, so the plan said "resolve" where the
    # resume held the failed atom.
    spec = tmp_path / "held.yaml"
    spec.write_text(
        "name: held\n"
        "engine: {name: serial, never_resolve: true}\n"
        "tasks:\n"
        f"  first: {{task: {T}:Count, inputs: {{n: 1}}}}\n"
        f"  boom:  {{task: {T}:Boom, after: [first]}}\n"
    )
    url = f"sqlite:///{tmp_path}/flows.db"
    done = flowkit_cmd("run", str(spec), "--connection", url)
    assert done.returncode == 1, done.stderr
    assert recorded_meta(url)["engine_options"] == {"never_resolve": True}
    planned = flowkit_cmd("flows", "resume", "held", "--dry-run", "--json", "--connection", url)
    assert planned.returncode == 0, planned.stderr
    actions = {atom["name"]: atom["action"] for atom in json.loads(planned.stdout)["atoms"]}
    assert actions["boom"] == "held", actions
    # and the plan is what the resume does: nothing (the failure stands, never resolved)
    resumed = flowkit_cmd("flows", "resume", "held", "--connection", url)
    assert resumed.returncode == 1, resumed.stderr
    with backends.backend(url) as backend, contextlib.closing(backend.get_connection()) as conn:
        [flow] = [flow for book in conn.get_logbooks() for flow in book]
        assert {d.name: d.state for d in flow} == {"first": "SUCCESS", "boom": "FAILURE"}
