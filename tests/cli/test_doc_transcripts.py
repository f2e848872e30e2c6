"""The ``flowkit`` commands README.rst and doc/cli.rst show, run as a newcomer runs them.

The commands are read from the documents themselves, so a renamed option, flow
or atom, or output that changed, fails here instead of in a reader's shell.
They run in an empty directory of their own (the relative ``sqlite:///flows.db``
lands there), with the checkout importable, as from a checkout after
``pip install -e '.[cli]'``.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from tests.cli.conftest import SOURCE_ROOT, flowkit_cmd
from tests.doc_blocks import literal_blocks

ROOT = Path(SOURCE_ROOT)
#: The target the pages' placeholder ``myapp.flows:make_flow`` stands for here.
QUICKSTART = "examples.quickstart:build_flow"


def _literal_blocks(text: str) -> list[list[str]]:
    """The ``::`` literal blocks of reST ``text``, each as its non-blank lines, unindented."""
    return [block.lines for block in literal_blocks(text) if block.language is None]


def _section(text: str, title: str) -> str:
    """The body of the section titled ``title`` (up to the next title of any level)."""
    start = text.index(f"\n{title}\n") + len(title) + 2
    following = re.search(r"\n[^\n]+\n[-=~^]{3,}\n", text[start:])
    return text[start : start + following.start()] if following else text[start:]


def _run(command: str, cwd: Path) -> tuple[int, str, str]:
    """Run a documented ``flowkit ...`` command line in ``cwd``: (status, stdout, stderr)."""
    argv = shlex.split(command)
    assert Path(argv[0]).name == "flowkit", command
    done = flowkit_cmd(*argv[1:], cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def test_the_readme_commands_run_the_quickstart_and_read_it_back(tmp_path: Path) -> None:
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    commands = [
        line for block in _literal_blocks(readme) for line in block if line.startswith(".venv/bin/flowkit ")
    ]
    assert [shlex.split(c)[1:3] for c in commands] == [
        ["run", "examples.quickstart:build_flow"],
        ["flows", "show"],
        ["flows", "why"],
    ], commands
    status, _, err = _run(commands[0], tmp_path)
    # The quickstart's card is declined by design: the run reverts, status 1, one line naming the atom.
    assert status == 1 and err.count("\n") == 1, err
    assert "flow 'open-shop' ended REVERTED; atom 'charge_card' failed with" in err
    status, out, err = _run(commands[1], tmp_path)
    assert status == 0, err
    for atom in ("reserve_domain", "create_database", "charge_card"):
        assert re.search(rf"^  {atom} +REVERTED ", out, re.M), out
    status, out, err = _run(commands[2], tmp_path)
    assert status == 0, err
    assert out.splitlines()[0] == "reserve_domain is REVERTED:", out


def test_the_flows_why_transcripts_of_the_cli_page_print_what_it_shows(tmp_path: Path) -> None:
    section = _section((ROOT / "doc" / "cli.rst").read_text(encoding="utf-8"), "``flowkit flows why``")
    ran = 0
    for block in _literal_blocks(section):
        command: str | None = None
        expected: list[str] = []
        for line in [*block, "$ "]:
            if not line.startswith("$ "):
                expected.append(line)
                continue
            if command is not None:
                status, out, err = _run(command, tmp_path)
                if expected:
                    assert (status, out.splitlines()) == (0, expected), f"{command}\n{err}"
                ran += 1
            command, expected = line[2:] or None, []
    assert ran == 3  # the quickstart's run, then why of an atom and why of the flow


def _console_blocks(text: str) -> list[list[str]]:
    """The ``.. code-block:: console`` blocks of reST ``text``, each as its non-blank lines, unindented."""
    return [block.lines for block in literal_blocks(text) if block.language == "console"]


def _expanded(synopsis: str, values: dict[str, str]) -> list[str]:
    """A synopsis line as command lines: its placeholders given ``values``, once bare and once
    with each ``[...]`` option alone (``[ATOM]`` as a placeholder)."""
    options = re.findall(r" \[([^\]]+)\]", synopsis)
    bare = re.sub(r" \[[^\]]+\]", "", synopsis)
    lines = [bare] + [f"{bare} {option}" for option in options if not option.isupper()]
    lines += [bare.replace(" --", f" {option} --", 1) for option in options if option.isupper()]
    return [" ".join(values.get(word, word) for word in line.split(" ")) for line in lines]


def test_every_synopsis_line_of_the_cli_page_runs_with_each_of_its_options(tmp_path: Path) -> None:
    # The page opens with the commands' synopsis, placeholders and options in brackets,
    # which no test ran: each is run here after the quickstart, its placeholders filled in
    # and each option alone, and must not be refused as bad usage. The reading commands
    # must succeed; a resume of the reverted quickstart runs it anew, which fails again.
    text = (ROOT / "doc" / "cli.rst").read_text(encoding="utf-8")
    (synopsis,) = (block for block in _console_blocks(text) if block[0].startswith("$ flowkit run "))
    values = {
        "myapp.flows:make_flow": QUICKSTART,
        "vm_id=42": "shop=bakery",
        "FLOW": "open-shop",
        "ATOM": "charge_card",
        "URL": "sqlite:///flows.db",
        "FAILURE": "REVERTED",
    }
    ran = []
    for line in synopsis:
        for command in _expanded(line[2:], values):
            status, out, err = _run(command, tmp_path)
            ran.append(command)
            words = command.split()
            if words[1] == "run" or (words[2] == "resume" and "--dry-run" not in words):
                # The error line comes last (with --json, after the lines the tasks printed).
                assert status == 1, f"{command}\n{err}"
                assert "flow 'open-shop' ended REVERTED" in err.splitlines()[-1], f"{command}\n{err}"
            else:
                assert status == 0, f"{command}\n{err}"
                assert out, command
            if "--json" in words:
                json.loads(out)
    assert len(ran) == 15, ran


def test_the_graph_commands_of_the_cli_page_print_dot_and_mermaid(tmp_path: Path) -> None:
    section = _section((ROOT / "doc" / "cli.rst").read_text(encoding="utf-8"), "``flowkit graph``")
    commands = [line[2:] for block in _literal_blocks(section) for line in block if line.startswith("$ ")]
    assert len(commands) == 2, commands
    starts = {"dot": "digraph", "mermaid": "flowchart"}
    for documented in commands:
        command = documented.split(" | ")[0].replace("myapp.flows:make_flow", QUICKSTART)
        status, out, err = _run(command, tmp_path)
        assert status == 0, f"{command}\n{err}"
        assert out.startswith(starts[command.split()[-1]]), out
        for atom in ("reserve_domain", "create_database", "charge_card"):
            assert atom in out, out
