"""The wire forms of sealed answers, shared by the kinds that take them (Bid; see
:mod:`mabeam.core.economics.sealing` for the format and docs/security.md for the design)."""

from __future__ import annotations

from pydantic import Field

from ._base import MabeamModel

__all__ = ["KEY_ID_PATTERN", "MAX_CIPHERTEXT", "SEALING_ALGORITHM", "SealedEnvelope", "SealingInfo"]

#: The one sealing scheme: an ephemeral X25519 key agreement, HKDF-SHA256, AES-256-GCM.
SEALING_ALGORITHM = "X25519-HKDF-SHA256-AES256GCM"
#: A key id: the SHA-256 fingerprint (first 16 bytes, hex) of the raw public key.
KEY_ID_PATTERN = r"^sha256:[0-9a-f]{32}$"
#: The longest ciphertext (base64 characters) a sealed answer may carry.
MAX_CIPHERTEXT = 16384


class SealingInfo(MabeamModel):
    """The operator's public key that sealed answers to this session are encrypted to."""

    algorithm: str = Field(default=SEALING_ALGORITHM, description="The sealing scheme.")
    key_id: str = Field(pattern=KEY_ID_PATTERN, description="The key's fingerprint.")
    public_key: str = Field(
        min_length=44, max_length=44, description="The raw X25519 public key, base64 (32 bytes)."
    )


class SealedEnvelope(MabeamModel):
    """An answer encrypted to the operator's key: only the operator can read it."""

    key_id: str = Field(
        pattern=KEY_ID_PATTERN, description="The key it is sealed to (the session's status.sealing.keyId)."
    )
    ciphertext: str = Field(
        min_length=1,
        max_length=MAX_CIPHERTEXT,
        pattern=r"^[A-Za-z0-9+/]+={0,2}$",
        description="Base64 of the ephemeral public key, the nonce and the AES-GCM ciphertext of the "
        "answer (which names the session's uid and the agent).",
    )
