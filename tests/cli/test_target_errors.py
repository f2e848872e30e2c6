"""A ``module:callable`` target that cannot give its flow is named in the one error line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.cli.conftest import flowkit_cmd

_MODULE = textwrap.dedent(
    """
    from flowkit import task
    from flowkit.patterns import linear_flow


    class Hello(task.Task):
        def execute(self):
            return "hi"


    def needs_args(size):
        return linear_flow.Flow("f").add(Hello())


    def raises():
        raise RuntimeError("no config file")
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding a user's flow module and a module that fails as it is imported."""
    (tmp_path / "userflows.py").write_text(_MODULE)
    (tmp_path / "brokenflows.py").write_text('raise RuntimeError("settings missing")\n')
    return tmp_path


@pytest.mark.parametrize("command", ["run", "graph"])
def test_a_factory_that_needs_arguments_is_bad_usage_naming_the_target(project: Path, command: str) -> None:
    # It said "TypeError: needs_args() missing 1 required positional argument: 'size'"
    # with status 1: neither the target nor that a target is called with no arguments.
    done = flowkit_cmd(command, "userflows:needs_args", cwd=project)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"flowkit {command}: error: target 'userflows:needs_args' is called with no arguments to build"
        " its flow, but it needs some (missing a required argument: 'size'): give a callable that"
        " takes none, or a flow object"
    )


@pytest.mark.parametrize("command", ["run", "graph"])
def test_a_factory_that_raises_is_named_with_its_error(project: Path, command: str) -> None:
    # It said "RuntimeError: no config file" alone: which of the user's modules raised it?
    done = flowkit_cmd(command, "userflows:raises", cwd=project)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        f"flowkit {command}: error: target 'userflows:raises' raised RuntimeError: no config file"
        " when called to build its flow (-v shows the traceback)"
    )


def test_a_module_that_fails_as_it_is_imported_is_named_with_its_error(project: Path) -> None:
    # It said "RuntimeError: settings missing" alone.
    done = flowkit_cmd("run", "brokenflows:make", cwd=project)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        "flowkit run: error: target 'brokenflows:make': importing module 'brokenflows' raised"
        " RuntimeError: settings missing (-v shows the traceback)"
    )


def test_a_worker_task_module_that_fails_as_it_is_imported_is_named_with_its_error(project: Path) -> None:
    # It said "flowkit worker: error: settings missing": neither the module nor the error's type.
    done = flowkit_cmd(
        "worker", "--redis", "redis://127.0.0.1:9/0", "--topic", "t", "--tasks", "brokenflows", cwd=project
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        "flowkit worker: error: importing task module 'brokenflows' raised RuntimeError: settings missing"
        " (-v shows the traceback)"
    )
    verbose = flowkit_cmd(
        "-v",
        "worker",
        "--redis",
        "redis://127.0.0.1:9/0",
        "--topic",
        "t",
        "--tasks",
        "brokenflows",
        cwd=project,
    )
    assert verbose.stderr.startswith("Traceback (most recent call last):"), verbose.stderr
    assert "RuntimeError: settings missing" in verbose.stderr


@pytest.mark.parametrize("tasks", [":Foo", "./tasks.py"])
def test_a_worker_tasks_value_that_names_no_module_stays_bad_usage(project: Path, tasks: str) -> None:
    # The check for modules failing as they are imported tried these too, and said
    # "importing task module '' raised ValueError" with status 1 for a usage error.
    done = flowkit_cmd(
        "worker", "--redis", "redis://127.0.0.1:9/0", "--topic", "t", "--tasks", tasks, cwd=project
    )
    assert done.returncode == 2, done.stderr
    assert "importing task module" not in done.stderr
