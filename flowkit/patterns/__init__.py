"""The ways to arrange atoms into flows.

* :mod:`~flowkit.patterns.linear_flow`: one after another, reverted in reverse.
* :mod:`~flowkit.patterns.unordered_flow`: in any order (or all at once).
* :mod:`~flowkit.patterns.graph_flow`: in the order their symbols and explicit
  links demand, optionally cut down to what one target needs.

Patterns nest: any of them can be an item of another.
"""

from __future__ import annotations

__all__: list[str] = []
