"""setup.cfg's extras: ``all`` installs every optional feature, so it cannot drift."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"
#: Extras for working on flowkit rather than using it; `all` leaves them out.
NOT_FEATURES = frozenset({"all", "test", "dev", "bench"})


def extras() -> dict[str, frozenset[str]]:
    """Each extra's requirements, with ``%(other)s`` references expanded as setuptools does."""
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG, encoding="utf-8")
    section = parser["options.extras_require"]
    return {
        name: frozenset(line.strip() for line in section[name].splitlines() if line.strip())
        for name in section
    }


def feature_extras() -> list[str]:
    return sorted(set(extras()) - NOT_FEATURES)


def test_there_are_feature_extras_and_an_all() -> None:
    assert "all" in extras()
    assert {"postgresql", "mysql", "zookeeper", "workers", "graph"} <= set(feature_extras())


@pytest.mark.parametrize("extra", feature_extras())
def test_all_installs_every_requirement_of(extra: str) -> None:
    missing = extras()[extra] - extras()["all"]
    assert not missing, f"setup.cfg: extra [all] lacks {sorted(missing)} of extra [{extra}]"


def test_all_installs_nothing_beyond_the_feature_extras() -> None:
    features = frozenset().union(*(extras()[name] for name in feature_extras()))
    assert extras()["all"] <= features


def test_the_test_command_installs_all() -> None:
    # tools/test.sh must exercise every optional backend's client, not only what dev pulls in.
    test_sh = (SETUP_CFG.parent / "tools" / "test.sh").read_text()
    assert "-e '.[dev,all]'" in test_sh
