"""Errors of the data plane.

The tree::

    DataplaneError
     ├── ConfigError          a wg-quick file (or a UAPI value) we cannot use
     ├── UapiError            a UAPI request we refuse; carries the errno to answer
     └── TunError             opening or configuring the TUN device failed

Per-packet faults never raise out of the packet loops; they are counted and
dropped. These errors are for startup and for control requests.
"""

from __future__ import annotations

import errno as _errno


class DataplaneError(Exception):
    """Base of every error raised by ``zerogate.dataplane``."""


class ConfigError(DataplaneError):
    """A configuration value is missing or wrong.

    ``key`` names the setting, ``line`` is its 1-based line number in the file
    (``None`` when the value did not come from a file).
    """

    def __init__(self, message: str, *, key: str | None = None, line: int | None = None) -> None:
        self.key = key
        self.line = line
        self.problem = message
        where = ""
        if line is not None:
            where = f"line {line}: "
        if key is not None:
            where += f"{key}: "
        super().__init__(f"{where}{message}")


class UapiError(DataplaneError):
    """A UAPI request was refused; ``errno`` is what the reply carries."""

    def __init__(self, message: str, errno: int = _errno.EINVAL) -> None:
        self.errno = errno
        super().__init__(message)


class TunError(DataplaneError):
    """The TUN device could not be created or configured."""
