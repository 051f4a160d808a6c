"""The sealing core: a sealed answer opens with the operator's key as the answer of the agent and
session it names, and in no other way (copies, other sessions, other keys, tampering)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.core.economics.sealing import (
    PAD,
    Opened,
    SealingKey,
    Unopened,
    key_id,
    open_sealed,
    public_key_of,
    seal,
)
from mabeam.models._sealed import SealedEnvelope, SealingInfo

KEY = SealingKey(hashlib.sha256(b"key").digest())
UID = "9d0f5b1e-1111-4222-8333-000000000001"


def sealed(
    content: dict[str, object],
    *,
    agent: str = "ada",
    uid: str = UID,
    kind: str = "Bid",
    key: SealingKey = KEY,
    seed: bytes = b"seed",
) -> SealedEnvelope:
    r = hashlib.sha256(seed).digest()
    return seal(key.info, kind, uid, agent, content, ephemeral=r, nonce=hashlib.sha256(r).digest()[:12])


def opened(envelope: SealedEnvelope, *, agent: str = "ada", uid: str = UID, others: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return open_sealed(KEY, envelope, "Bid", uid, agent, others=others)


def test_the_key_id_is_the_fingerprint_of_the_public_key() -> None:
    public = X25519PrivateKey.from_private_bytes(KEY.private_key).public_key().public_bytes_raw()
    assert KEY.public_key == public == public_key_of(KEY.private_key)
    assert KEY.key_id == key_id(public) == "sha256:" + hashlib.sha256(public).hexdigest()[:32]
    assert KEY.info.public_key == base64.b64encode(public).decode()
    assert SealingInfo.model_validate(KEY.info.to_wire()) == KEY.info  # fits the status schema


def test_round_trip() -> None:
    envelope = sealed({"amount": 12.5})
    assert envelope.key_id == KEY.key_id
    assert SealedEnvelope.model_validate(envelope.to_wire()) == envelope  # fits the Bid schema
    assert opened(envelope) == Opened({"amount": 12.5})


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["amount", "bundles", "x"]),
        st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.lists(st.integers(), max_size=5)),
        max_size=3,
    ),
    st.binary(min_size=1, max_size=8),
)
def test_any_content_round_trips_and_the_length_tells_only_a_size_class(
    content: dict[str, object], seed: bytes
) -> None:
    envelope = sealed(content, seed=seed)
    assert opened(envelope) == Opened(content)
    raw = base64.b64decode(envelope.ciphertext)
    assert (len(raw) - 32 - 12 - 16) % PAD == 0  # padded: no digit count shows


def test_the_same_bid_sealed_twice_looks_different() -> None:
    assert sealed({"amount": 1}, seed=b"a").ciphertext != sealed({"amount": 1}, seed=b"b").ciphertext
    assert len(sealed({"amount": 1}).ciphertext) == len(sealed({"amount": 123456.75}).ciphertext)


def test_a_copied_ciphertext_names_its_original_and_is_refused() -> None:
    alice = sealed({"amount": 9}, agent="alice")
    result = opened(alice, agent="mallory", others=("alice", "bob", "mallory"))
    assert isinstance(result, Unopened) and result.reason == "Copied"
    assert "copy of alice's sealed Bid" in result.message and "9" not in result.message
    # Without the participants to try, it is just a ciphertext that is not mallory's.
    alone = opened(alice, agent="mallory")
    assert isinstance(alone, Unopened) and alone.reason == "BadSeal"


def test_a_ciphertext_of_another_auction_is_refused() -> None:
    result = opened(sealed({"amount": 9}, uid="another-uid"), others=("ada", "bob"))
    assert isinstance(result, Unopened) and result.reason == "BadSeal"
    assert f"uid {UID}" in result.message


def test_another_kind_of_answer_does_not_open_as_a_bid() -> None:
    result = opened(sealed({"amount": 9}, kind="Order"))
    assert isinstance(result, Unopened) and result.reason == "BadSeal"


def test_a_wrong_key_is_refused() -> None:
    other = SealingKey(hashlib.sha256(b"other").digest())
    to_other = sealed({"amount": 1}, key=other)
    result = opened(to_other)
    assert isinstance(result, Unopened) and result.reason == "WrongKey"
    assert other.key_id in result.message and KEY.key_id in result.message
    # Relabelled with our key id, it still does not open: only our private key opens.
    relabelled = SealedEnvelope(key_id=KEY.key_id, ciphertext=to_other.ciphertext)
    assert isinstance(opened(relabelled), Unopened)
    assert open_sealed(other, to_other, "Bid", UID, "ada") == Opened({"amount": 1})


@pytest.mark.parametrize("where", [0, 31, 32, 43, 44, -17, -1], ids=lambda w: f"byte{w}")
def test_any_flipped_bit_is_refused(where: int) -> None:
    raw = bytearray(base64.b64decode(sealed({"amount": 5}).ciphertext))
    raw[where] ^= 0x10
    envelope = SealedEnvelope(key_id=KEY.key_id, ciphertext=base64.b64encode(bytes(raw)).decode())
    result = opened(envelope, others=("bob",))
    assert isinstance(result, Unopened) and result.reason == "BadSeal"


@pytest.mark.parametrize(
    "ciphertext",
    [
        base64.b64encode(b"short").decode(),
        base64.b64encode(bytes(32) + bytes(12) + bytes(40)).decode(),  # an all-zero (low-order) key
        "not/base64==",
    ],
    ids=["too-short", "low-order-key", "not-base64"],
)
def test_garbage_is_refused_without_an_error(ciphertext: str) -> None:
    envelope = SealedEnvelope.model_construct(key_id=KEY.key_id, ciphertext=ciphertext)
    result = opened(envelope)
    assert isinstance(result, Unopened) and result.reason == "BadSeal"


def test_sealing_checks_the_published_key() -> None:
    bad = SealingInfo(key_id=KEY.key_id, public_key=base64.b64encode(bytes(32)).decode())
    with pytest.raises(ValueError, match="does not match"):
        seal(bad, "Bid", UID, "ada", {"amount": 1}, ephemeral=bytes(32), nonce=bytes(12))
    with pytest.raises(ValueError, match="random bytes"):
        seal(KEY.info, "Bid", UID, "ada", {"amount": 1}, ephemeral=bytes(31), nonce=bytes(12))
