"""The operator's sealing key: the X25519 private key that sealed bids are encrypted to.

It lives in the Secret ``mabeam-sealing-key`` of the operator's own namespace (``$POD_NAMESPACE``,
else ``mabeam-system``), readable by the operator alone (the chart grants get on that one
Secret, and create in that namespace; agents get no Secrets). The operator reads it at startup
and creates it when it is absent; when two replicas race, one create wins and the other reads
the winner's key (409), so every replica holds the same key. The public half is published in
each sealed Auction's ``status.sealing`` (see :mod:`mabeam.core.economics.sealing`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from typing import Any

import kopf
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..core.economics.sealing import SealingKey
from ..errors import ApiError
from ..kube.client import AlreadyExistsError, Kube
from ..kube.permissions import SEALING_KEY_SECRET
from ..kube.resources import SECRET
from ._runtime import Runtime

__all__ = ["KEY_FIELD", "load_or_create", "operator_namespace", "sealing_key"]

log = logging.getLogger(__name__)

#: The Secret's data key: the raw 32-byte X25519 private key.
KEY_FIELD = "x25519-private-key"


def operator_namespace() -> str:
    """The operator's own namespace: ``$POD_NAMESPACE`` (set by the chart), else mabeam-system."""
    return os.environ.get("POD_NAMESPACE") or "mabeam-system"


def _key_of(secret: dict[str, Any], namespace: str) -> SealingKey:
    where = f"Secret {namespace}/{SEALING_KEY_SECRET}"
    data = secret.get("data") or {}
    try:
        raw = base64.b64decode(str(data[KEY_FIELD]), validate=True)
    except (KeyError, binascii.Error):
        raise ApiError(f"{where} has no base64 data.{KEY_FIELD}; delete it to have a new key made") from None
    if len(raw) != 32:
        raise ApiError(
            f"{where}: data.{KEY_FIELD} is not a 32-byte X25519 key; delete it to have a new one made"
        )
    return SealingKey(raw)


async def load_or_create(kube: Kube, namespace: str) -> SealingKey:
    """Read the sealing key's Secret, creating it with a new key if it is absent."""
    secret = await kube.get(SECRET, SEALING_KEY_SECRET, namespace)
    if secret is None:
        private = X25519PrivateKey.generate().private_bytes_raw()
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": SEALING_KEY_SECRET,
                "namespace": namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": "mabeam",
                    "app.kubernetes.io/component": "sealing",
                },
            },
            "type": "Opaque",
            "data": {KEY_FIELD: base64.b64encode(private).decode()},
        }
        try:
            secret = await kube.create(SECRET, body)
            log.info("Created the sealing key %s/%s", namespace, SEALING_KEY_SECRET)
        except AlreadyExistsError:
            secret = await kube.get(SECRET, SEALING_KEY_SECRET, namespace)  # another replica won
            if secret is None:
                raise ApiError(
                    f"Secret {namespace}/{SEALING_KEY_SECRET} vanished right after a conflict"
                ) from None
    return _key_of(secret, namespace)


async def sealing_key(memo: Runtime) -> SealingKey:
    """The operator's sealing key, loaded (or created) once per run; ApiError to retry (also
    when the Secret holds no usable key, which an administrator can fix)."""
    # Two passes racing here both read (or one creates, the other reads) the same Secret.
    if memo.sealing_key is None:
        memo.sealing_key = await load_or_create(memo.kube, operator_namespace())
    return memo.sealing_key


@kopf.on.startup()
async def load_sealing_key(memo: Runtime, **_: Any) -> None:
    """Have the key ready (and published to nobody yet) before the first sealed Auction."""
    memo.sealing_key = None  # a new run reads the Secret again
    if getattr(memo, "kube", None) is None:
        return  # loaded at first need
    try:
        key = await sealing_key(memo)
    except ApiError as exc:
        log.warning(f"The sealing key is not available yet (sealed auctions wait for it): {exc}")
        return
    log.info(f"Sealed bids are encrypted to key {key.key_id}")
