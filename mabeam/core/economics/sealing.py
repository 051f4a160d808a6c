"""Sealed answers: encrypted to a key only the operator holds, bound to one session and one agent.

An agent seals its answer (a Bid's amount or bundles) to the operator's X25519 public key,
which the session publishes in ``status.sealing``; only the operator, which holds the private
key, can open it, and it does so when bidding closes. The scheme (``SEALING_ALGORITHM``):

- a fresh (ephemeral) X25519 key pair per seal; the shared secret with the operator's key goes
  through HKDF-SHA256 (salt: the ephemeral public key then the operator's public key; info:
  ``mabeam.io/sealed/v1``) into a 256-bit AES-GCM key;
- the plaintext is canonical JSON ``{"v": 1, "kind": "Bid", "session": <uid>, "agent": <name>,
  "content": {...}}``, padded with spaces to a multiple of ``PAD`` (256) bytes so that the
  ciphertext's length does not tell an amount's digits; the associated data is
  ``["mabeam.io/sealed/v1", kind, uid, agent]`` (JSON), so the ciphertext authenticates only as
  that agent's answer of that kind in that session;
- the envelope is ``{"keyId", "ciphertext"}`` with ciphertext = base64(ephemeral public key (32
  bytes) ‖ nonce (12 bytes) ‖ AES-GCM output).

A ciphertext copied from another agent's answer fails authentication under the copier's name;
:func:`open_sealed` then tries the session's other participants and, when one of them fits,
names the original (reason ``Copied``). A ciphertext from another session, altered, or sealed
to another key never opens (``BadSeal``, ``WrongKey``).

Pure: no I/O, no clock, no randomness of its own. :func:`seal` takes the ephemeral private key
and the nonce as arguments (the SDK draws them from ``os.urandom``); key generation and the
Secret that holds the private key are the operator's (``mabeam.controller._sealing``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ...models._sealed import SEALING_ALGORITHM, SealedEnvelope, SealingInfo

__all__ = [
    "PAD",
    "SEALING_ALGORITHM",
    "Opened",
    "SealingKey",
    "Unopened",
    "key_id",
    "key_problem",
    "open_sealed",
    "public_key_of",
    "seal",
]

_LABEL = "mabeam.io/sealed/v1"
#: Plaintexts are padded to a multiple of this many bytes.
PAD = 256
_VERSION = 1
_KEY = 32
_NONCE = 12
_TAG = 16


def public_key_of(private_key: bytes) -> bytes:
    """The raw X25519 public key (32 bytes) of a raw private key (32 bytes)."""
    return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()


def key_id(public_key: bytes) -> str:
    """A key's fingerprint: ``sha256:`` and the first 16 bytes of the SHA-256 of the raw key, hex."""
    return "sha256:" + hashlib.sha256(public_key).hexdigest()[:32]


@dataclass(frozen=True)
class SealingKey:
    """The operator's private key (raw X25519, 32 bytes)."""

    private_key: bytes

    @functools.cached_property
    def public_key(self) -> bytes:
        return public_key_of(self.private_key)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    @property
    def info(self) -> SealingInfo:
        """What a session publishes in ``status.sealing`` for agents to seal to."""
        return SealingInfo(key_id=self.key_id, public_key=base64.b64encode(self.public_key).decode())


def _aad(kind: str, session_uid: str, agent: str) -> bytes:
    return json.dumps([_LABEL, kind, session_uid, agent], separators=(",", ":")).encode()


def _aead(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> AESGCM:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=_KEY, salt=ephemeral_public + recipient_public, info=_LABEL.encode()
    )
    return AESGCM(hkdf.derive(shared))


def seal(
    info: SealingInfo,
    kind: str,
    session_uid: str,
    agent: str,
    content: Mapping[str, Any],
    *,
    ephemeral: bytes,
    nonce: bytes,
) -> SealedEnvelope:
    """Seal ``content`` (JSON-able) as ``agent``'s answer of ``kind`` in the session ``session_uid``.

    ``ephemeral`` (32 bytes) and ``nonce`` (12 bytes) must be fresh random bytes for every seal.
    Raises ValueError for a public key or random bytes of the wrong length.
    """
    if len(ephemeral) != _KEY or len(nonce) != _NONCE:
        raise ValueError(f"sealing needs {_KEY} random bytes for the key and {_NONCE} for the nonce")
    try:
        recipient = base64.b64decode(info.public_key, validate=True)
    except binascii.Error:
        raise ValueError("status.sealing.publicKey is not base64") from None
    if len(recipient) != _KEY or key_id(recipient) != info.key_id:
        raise ValueError("status.sealing.publicKey does not match status.sealing.keyId")
    private = X25519PrivateKey.from_private_bytes(ephemeral)
    ephemeral_public = private.public_key().public_bytes_raw()
    shared = private.exchange(X25519PublicKey.from_public_bytes(recipient))
    payload = {"v": _VERSION, "kind": kind, "session": session_uid, "agent": agent, "content": dict(content)}
    plaintext = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    plaintext += b" " * (-len(plaintext) % PAD)
    sealed = _aead(shared, ephemeral_public, recipient).encrypt(
        nonce, plaintext, _aad(kind, session_uid, agent)
    )
    ciphertext = base64.b64encode(ephemeral_public + nonce + sealed).decode()
    return SealedEnvelope(key_id=info.key_id, ciphertext=ciphertext)


def key_problem(published: SealingInfo | None, key: SealingKey | None) -> tuple[str, str] | None:
    """(reason, message) if ``key`` cannot open what was sealed to the session's ``published``
    key (its ``status.sealing``): ``NoSealingKey`` or ``SealingKeyChanged``; None if it can."""
    if key is None:
        return ("NoSealingKey", "the operator has no key to open sealed answers with")
    if published is None:
        return ("NoSealingKey", "status.sealing is missing: the key the answers are sealed to is unknown")
    if key.key_id != published.key_id:
        return (
            "SealingKeyChanged",
            f"the answers are sealed to key {published.key_id} (status.sealing), but the operator's "
            f"key is now {key.key_id}: the Secret mabeam-sealing-key was replaced, so none of them "
            "can be opened",
        )
    return None


@dataclass(frozen=True)
class Opened:
    """A sealed answer opened: its content (as sealed, not yet validated)."""

    content: Mapping[str, Any]


@dataclass(frozen=True)
class Unopened:
    """Why a sealed answer cannot be counted: ``WrongKey``, ``BadSeal`` or ``Copied``."""

    reason: str
    message: str


@functools.lru_cache(maxsize=4096)
def _shared(private_key: bytes, ephemeral_public: bytes) -> bytes | None:
    """The X25519 shared secret (None: not a usable public key). Memoized: a session's step
    opens the same bids again on every pass while bidding is open."""
    try:
        return X25519PrivateKey.from_private_bytes(private_key).exchange(
            X25519PublicKey.from_public_bytes(ephemeral_public)
        )
    except ValueError:  # e.g. a low-order point: the exchange gives all zeros
        return None


def open_sealed(
    key: SealingKey,
    envelope: SealedEnvelope,
    kind: str,
    session_uid: str,
    agent: str,
    *,
    others: Iterable[str] = (),
) -> Opened | Unopened:
    """Open ``agent``'s sealed answer of ``kind`` in the session ``session_uid``.

    ``others``: the session's other participants; a ciphertext that authenticates as one of
    theirs is reported as a copy of it (``Copied``). The messages never tell the content.
    """
    what = f"{agent}'s sealed {kind}"
    if envelope.key_id != key.key_id:
        return Unopened(
            "WrongKey",
            f"{what} is sealed to key {envelope.key_id}, but this session takes key {key.key_id} "
            "(status.sealing.keyId); seal it again to status.sealing.publicKey",
        )
    try:
        raw = base64.b64decode(envelope.ciphertext, validate=True)
    except binascii.Error:
        return Unopened("BadSeal", f"{what}: spec.sealed.ciphertext is not base64")
    if len(raw) < _KEY + _NONCE + _TAG:
        return Unopened("BadSeal", f"{what}: spec.sealed.ciphertext is too short to be a sealed answer")
    ephemeral_public, nonce, sealed = raw[:_KEY], raw[_KEY : _KEY + _NONCE], raw[_KEY + _NONCE :]
    shared = _shared(key.private_key, ephemeral_public)
    if shared is None:
        return Unopened("BadSeal", f"{what}: spec.sealed.ciphertext does not start with a usable public key")
    aead = _aead(shared, ephemeral_public, key.public_key)
    try:
        plaintext = aead.decrypt(nonce, sealed, _aad(kind, session_uid, agent))
    except InvalidTag:
        for other in sorted(set(others) - {agent}):
            try:
                aead.decrypt(nonce, sealed, _aad(kind, session_uid, other))
            except InvalidTag:
                continue
            return Unopened(
                "Copied",
                f"this is a copy of {other}'s sealed {kind}, not {agent}'s own: a copied sealed answer "
                "is never counted",
            )
        return Unopened(
            "BadSeal",
            f"{what} does not open as {agent}'s answer in this session (uid {session_uid}): it was "
            "sealed for another agent or another session, or it was altered; seal the answer "
            "again with this session's uid, your agent name and status.sealing.publicKey",
        )
    try:
        payload = json.loads(plaintext)
    except ValueError:
        return Unopened("BadSeal", f"{what} opens to something that is not JSON")
    bound = {"v": _VERSION, "kind": kind, "session": session_uid, "agent": agent}
    if not isinstance(payload, dict) or any(payload.get(k) != v for k, v in bound.items()):
        return Unopened(
            "BadSeal",
            f"{what} opens to a payload that does not name this session (uid {session_uid}), "
            f"{agent} and version {_VERSION}",
        )
    content = payload.get("content")
    if not isinstance(content, dict):
        return Unopened("BadSeal", f"{what} opens to a payload without its content")
    return Opened(content)
