"""flowkit's public value types: :mod:`~flowkit.types.failure` and :mod:`~flowkit.types.notifier`.

Import the modules directly (``from flowkit.types import failure``); this
package re-exports nothing so that importing it stays cheap.
"""

from __future__ import annotations

__all__: list[str] = []
