"""flowkit's version, under TaskFlow's ``version`` module names.

Programs that report the library they run on call
``version.version_string()``. This module holds the one copy of the version
number; ``flowkit.__version__`` (which the packaging reads) comes from here.
"""

from __future__ import annotations

__all__ = [
    "TASK_PACKAGE",
    "TASK_PRODUCT",
    "TASK_VENDOR",
    "__version__",
    "version_string",
    "version_string_with_package",
]

__version__ = "0.1.0"

TASK_VENDOR = "flowkit"
TASK_PRODUCT = "flowkit"
#: A distribution's package suffix (say ``"1.el9"``), appended by
#: :func:`version_string_with_package`; None when flowkit is installed as is.
TASK_PACKAGE: str | None = None


def version_string() -> str:
    """Return flowkit's version, e.g. ``"0.1.0"``."""
    return __version__


def version_string_with_package() -> str:
    """Return the version followed by ``-TASK_PACKAGE`` when a package suffix is set."""
    if TASK_PACKAGE is None:
        return version_string()
    return f"{version_string()}-{TASK_PACKAGE}"
