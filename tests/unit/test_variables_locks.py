"""Lock decisions with fencing tokens (the Lease I/O is the handlers' job)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.core.variables import acquire, expire_lock, is_expired, parse_status, release
from mabeam.errors import InvalidSpecError, LockError
from mabeam.models.variable import VariableStatus

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def locked(status: VariableStatus) -> tuple[str, str]:
    cond = next(c for c in status.conditions if c.type == "Locked")
    return cond.status, cond.reason


def test_acquire_a_free_lock() -> None:
    status, token = acquire(parse_status(None), "pod-a", T0, ttl=1.5)
    assert token == 1
    assert status.lock is not None
    assert (status.lock.holder, status.lock.fencing_token) == ("pod-a", 1)
    assert status.lock.expires_at == "2026-01-01T00:00:01.500000Z"
    assert locked(status) == ("True", "Acquired")
    assert not is_expired(status.lock, at(1.4))
    assert is_expired(status.lock, at(1.5))


def test_another_holder_waits_until_the_lease_runs_out() -> None:
    status, t1 = acquire(parse_status(None), "pod-a", T0, ttl=10)
    with pytest.raises(LockError, match="pod-a"):
        acquire(status, "pod-b", at(9.999), ttl=10)
    status, t2 = acquire(status, "pod-b", at(10), ttl=10)
    assert t2 == t1 + 1


def test_renewal_keeps_the_token_and_moves_the_expiry() -> None:
    status, t1 = acquire(parse_status(None), "pod-a", T0, ttl=10)
    status, t2 = acquire(status, "pod-a", at(8), ttl=10)
    assert t2 == t1 and status.lock is not None and status.lock.expires_at == "2026-01-01T00:00:18.000000Z"
    status, t3 = acquire(status, "pod-a", at(30), ttl=10)  # lapsed in between: a new token
    assert t3 == t1 + 1


def test_release_keeps_the_token_so_the_next_one_is_larger() -> None:
    status, t1 = acquire(parse_status(None), "pod-a", T0, ttl=10)
    with pytest.raises(LockError, match="held by pod-a"):
        release(status, "pod-b", at(1))
    with pytest.raises(LockError, match="not the current"):
        release(status, "pod-a", at(1), token=t1 + 7)
    status = release(status, "pod-a", at(1), token=t1)
    assert status.lock is not None and (status.lock.holder, status.lock.fencing_token) == (None, t1)
    assert locked(status) == ("False", "Released")
    assert release(status, "pod-a", at(2)) is status  # releasing a free lock changes nothing
    _, t2 = acquire(status, "pod-b", at(2), ttl=10)
    assert t2 == t1 + 1


def test_expire_lock_clears_a_lapsed_lease_only() -> None:
    status, token = acquire(parse_status(None), "pod-a", T0, ttl=10)
    assert expire_lock(status, at(5)) is status
    expired = expire_lock(status, at(10))
    assert expired.lock is not None and (expired.lock.holder, expired.lock.fencing_token) == (None, token)
    assert locked(expired) == ("False", "Expired")
    assert expire_lock(expired, at(20)) is expired


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_a_bad_ttl_is_refused(ttl: float) -> None:
    with pytest.raises(InvalidSpecError):
        acquire(parse_status(None), "pod-a", T0, ttl=ttl)


def test_a_garbled_expiry_is_reported_not_guessed() -> None:
    status = parse_status({"lock": {"holder": "x", "fencingToken": 3, "expiresAt": "soon"}})
    with pytest.raises(InvalidSpecError) as info:
        is_expired(status.lock, T0)
    assert info.value.path == "status.lock.expiresAt"


ops = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "release", "expire"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 4),  # seconds that pass before the operation
        st.integers(1, 5),  # ttl
    ),
    max_size=25,
)


@given(ops)
def test_lock_against_a_reference_model(steps: list[tuple[str, str, int, int]]) -> None:
    """At most one live holder; a new holder always gets a token larger than every earlier one."""
    status = parse_status(None)
    now = 0
    holder: str | None = None  # the reference: holder, expiry (seconds), highest token issued
    until = 0
    issued = 0
    for op, who, wait, ttl in steps:
        now += wait
        live = holder is not None and now < until
        if op == "acquire":
            if live and holder != who:
                with pytest.raises(LockError):
                    acquire(status, who, at(now), ttl=ttl)
                continue
            status, token = acquire(status, who, at(now), ttl=ttl)
            if not live:
                issued += 1
            assert token == issued
            holder, until = who, now + ttl
        elif op == "release":
            if live and holder != who:
                with pytest.raises(LockError):
                    release(status, who, at(now))
                continue
            status = release(status, who, at(now))
            holder = None
        else:
            status = expire_lock(status, at(now))
            if not live:
                holder = None
        assert is_expired(status.lock, at(now)) == (holder is None or now >= until)
        if status.lock is not None:
            assert status.lock.fencing_token == issued
            assert status.lock.holder == holder
