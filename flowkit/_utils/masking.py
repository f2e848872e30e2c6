"""What stands for a secret wherever flowkit shows one.

A password in a URL, a token in a logged request, a credential kazoo logs, a
key a :class:`~flowkit.formatters.FailureFormatter` is told to mask: each is
replaced by :data:`MASK`. One constant, in the base layer so that every layer
may import it, keeps them alike; a reader (or a test, or
``flowkit flows resume`` looking for a password lost to masking) then needs to
know only one text. It is TaskFlow's, whose formatter masks with ``'***'``.
"""

from __future__ import annotations

__all__ = ["MASK"]

#: The text shown in place of a secret.
MASK = "***"
