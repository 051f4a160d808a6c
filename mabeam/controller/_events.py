"""Posting Kubernetes Events about our objects (plain dicts) through kopf's event poster."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import kopf


def post(obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
    """Queue an Event about ``obj`` (needs apiVersion, kind and metadata with name and uid)."""
    kopf.event(cast(kopf.Body, obj), type=type, reason=reason, message=message)
