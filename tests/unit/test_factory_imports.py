"""A flow factory named by text: why it cannot be imported is said, not swallowed.

``load_from_factory("pkg.mod.make")`` and resuming a factory flow import the
module by name. Its name is tried from the longest dotted prefix down (a
factory may be a class attribute), so a prefix that is no module is passed
over; but the reason the module itself could not be imported (it is not on the
path, or its own imports fail) is what the user needs, as TaskFlow's error
gives it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from flowkit import engines


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    name = f"factories_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(body, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_factory_module_whose_own_import_fails_says_what_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(tmp_path, monkeypatch, "import dependency_not_installed_zz\n\ndef make():\n    pass\n")
    with pytest.raises(ImportError) as raised:
        engines.load_from_factory(f"{name}.make")
    message = str(raised.value)
    assert message.startswith(f"Could not import factory '{name}.make': ")  # TaskFlow's words first
    assert "No module named 'dependency_not_installed_zz'" in message
    assert f"importing {name}" in message


def test_a_factory_module_raising_another_import_error_says_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(tmp_path, monkeypatch, "from os import no_such_name_zz\n\ndef make():\n    pass\n")
    with pytest.raises(ImportError, match="cannot import name 'no_such_name_zz'"):
        engines.load_from_factory(f"{name}.make")


def test_a_factory_module_not_on_the_path_is_named() -> None:
    with pytest.raises(ImportError) as raised:
        engines.load_from_factory("nomodule_zz_q.sub.make")
    assert "No module named 'nomodule_zz_q'" in str(raised.value)


def test_a_factory_that_is_a_class_attribute_is_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = (
        "from flowkit import task\n"
        "from flowkit.patterns import linear_flow\n"
        "class One(task.Task):\n"
        "    def execute(self):\n"
        "        return 1\n"
        "class Factories:\n"
        "    @staticmethod\n"
        "    def make():\n"
        "        return linear_flow.Flow('f').add(One(provides='x'))\n"
    )
    name = _module(tmp_path, monkeypatch, body)
    engine = engines.load_from_factory(f"{name}.Factories.make")
    engine.run()
    assert engine.storage.fetch("x") == 1
