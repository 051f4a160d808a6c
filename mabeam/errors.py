"""Every error MABEAM raises, in one place.

Hierarchy::

    MabeamError                      base of everything below
    ├── InvalidSpecError             a spec or answer that cannot be used as written
    │                                (carries the field path); handlers turn it into
    │                                an ``Invalid`` condition, never a crash
    ├── ConflictError                a write based on a stale version or an old fencing
    │                                token; carries the current value and version
    ├── AccessDeniedError            an agent tried to act on something it may not
    ├── LockError                    a lock could not be taken or is held by another
    └── ApiError                     the Kubernetes API failed in a way that is worth
                                     retrying (connection, 5xx, 429)

Messages say what was wrong, where (the field path) and what is allowed.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDeniedError",
    "ApiError",
    "ConflictError",
    "InvalidSpecError",
    "LockError",
    "MabeamError",
]


class MabeamError(Exception):
    """Base class of every MABEAM error."""


class InvalidSpecError(MabeamError):
    """A spec (or an agent's answer) that cannot be used as written."""

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class ConflictError(MabeamError):
    """A write lost a race: it was based on a stale version (or an old fencing token)."""

    def __init__(
        self, message: str, *, current_value: Any = None, current_version: int | None = None
    ) -> None:
        self.current_value = current_value
        self.current_version = current_version
        super().__init__(message)


class AccessDeniedError(MabeamError):
    """An agent tried to write or answer for something it is not allowed to."""


class LockError(MabeamError):
    """A lock is held by someone else, or the caller's lease has expired."""


class ApiError(MabeamError):
    """A Kubernetes API call failed in a way that can be retried."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        self.status = status
        #: Seconds the server asked to wait before retrying (``Retry-After`` of a 429 or 503).
        self.retry_after = retry_after
        super().__init__(message)
