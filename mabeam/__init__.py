"""MABEAM: Kubernetes-native coordination of software agents."""

from . import errors, models
from .errors import (
    AccessDeniedError,
    ApiError,
    ConflictError,
    InvalidSpecError,
    LockError,
    MabeamError,
)

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "ApiError",
    "ConflictError",
    "InvalidSpecError",
    "LockError",
    "MabeamError",
    "__version__",
    "errors",
    "models",
]
