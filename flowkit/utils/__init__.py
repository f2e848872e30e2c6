"""Helpers under TaskFlow's ``taskflow.utils`` names that services import directly.

Only what services are known to call is here: OpenStack Octavia makes its shared
ZooKeeper client with ``taskflow.utils.kazoo_utils`` and hands it to the jobboard,
so :mod:`flowkit.utils.kazoo_utils` exists for it. The rest of ``taskflow.utils``
(TaskFlow's internals) has no counterpart.
"""

from __future__ import annotations

__all__: list[str] = []
