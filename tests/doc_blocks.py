"""The literal blocks of a reST page, as the tests that run the docs read them.

Two tests run what the pages show: ``tests/cli/test_doc_transcripts.py`` the
``flowkit`` command lines, ``tests/test_doc_snippets.py`` the Python. Both
read the blocks here, so they agree on where a block starts and ends.

A block is introduced by a paragraph ending in ``::`` (not a directive) or by
a ``.. code-block:: LANGUAGE`` directive (its ``:option:`` lines skipped), and
holds every following line that is blank or indented deeper than the line
that introduced it. ``.. testcode::`` blocks are not read here: Sphinx's
doctest builder runs them (``tools/test.sh``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["LiteralBlock", "literal_blocks"]

_CODE_BLOCK = re.compile(r"\s*\.\. (?:code-block|code|sourcecode)::[ \t]*(\S*)\s*$")


class LiteralBlock(NamedTuple):
    """One literal block of a page."""

    #: The 1-based line of the page where the block's text starts.
    line: int
    #: The ``code-block`` language (``"python"``, ``"console"``...); None for a ``::`` block.
    language: str | None
    #: The block's text, its common indentation removed, blank lines inside kept.
    text: str

    @property
    def lines(self) -> list[str]:
        """The block's non-blank lines."""
        return [line for line in self.text.splitlines() if line.strip()]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def literal_blocks(text: str) -> list[LiteralBlock]:
    """The literal blocks of reST ``text``, in page order."""
    blocks: list[LiteralBlock] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opener = lines[i]
        directive = _CODE_BLOCK.match(opener)
        stripped = opener.strip()
        if directive is None and not (stripped.endswith("::") and not stripped.startswith("..")):
            i += 1
            continue
        base = _indent(opener)
        i += 1
        if directive is not None:  # the directive's options come first, before a blank line
            while i < len(lines) and lines[i].strip().startswith(":") and _indent(lines[i]) > base:
                i += 1
        start = i
        body: list[str] = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
            body.append(lines[i])
            i += 1
        filled = [line for line in body if line.strip()]
        if not filled:
            continue
        cut = min(_indent(line) for line in filled)
        dedented = "\n".join(line[cut:] for line in body).strip("\n") + "\n"
        language = (directive.group(1) or None) if directive is not None else None
        first = start + next(n for n, line in enumerate(body) if line.strip())
        blocks.append(LiteralBlock(first + 1, language, dedented))
    return blocks
