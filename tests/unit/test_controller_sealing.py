"""The operator's sealing key: read from its Secret, created when absent, the same for two
replicas that race to create it, and a broken Secret reported (to retry) rather than replaced."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from mabeam.controller._sealing import KEY_FIELD, load_or_create
from mabeam.errors import ApiError
from mabeam.kube.client import AlreadyExistsError
from mabeam.kube.permissions import SEALING_KEY_SECRET
from mabeam.kube.resources import SECRET

NS = "mabeam-system"


class Secrets:
    """An API with one namespace of Secrets; ``rival`` creates the Secret just before us."""

    def __init__(self, rival: dict[str, Any] | None = None) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.rival = rival
        self.calls: list[str] = []

    async def get(self, res: Any, name: str, namespace: str) -> dict[str, Any] | None:
        assert (res, namespace) == (SECRET, NS)
        self.calls.append(f"get {name}")
        return self.stored.get(name)

    async def create(self, res: Any, body: dict[str, Any]) -> dict[str, Any]:
        assert res == SECRET and body["metadata"]["namespace"] == NS
        self.calls.append(f"create {body['metadata']['name']}")
        if self.rival is not None:
            self.stored[SEALING_KEY_SECRET] = self.rival
            raise AlreadyExistsError("secrets mabeam-sealing-key already exists")
        self.stored[body["metadata"]["name"]] = body
        return body


def secret(raw: bytes) -> dict[str, Any]:
    return {"metadata": {"name": SEALING_KEY_SECRET}, "data": {KEY_FIELD: base64.b64encode(raw).decode()}}


async def test_an_absent_key_is_created_then_read_back() -> None:
    api = Secrets()
    first = await load_or_create(api, NS)  # type: ignore[arg-type]
    again = await load_or_create(api, NS)  # type: ignore[arg-type]
    assert first == again and len(first.private_key) == 32
    assert api.calls == [
        f"get {SEALING_KEY_SECRET}",
        f"create {SEALING_KEY_SECRET}",
        f"get {SEALING_KEY_SECRET}",
    ]
    assert api.stored[SEALING_KEY_SECRET]["type"] == "Opaque"


async def test_a_replica_that_loses_the_race_uses_the_winners_key() -> None:
    winner = bytes(range(32))
    api = Secrets(rival=secret(winner))
    key = await load_or_create(api, NS)  # type: ignore[arg-type]
    assert key.private_key == winner
    assert api.calls[-1] == f"get {SEALING_KEY_SECRET}"


@pytest.mark.parametrize(
    "data", [{}, {KEY_FIELD: "not base64!"}, {KEY_FIELD: base64.b64encode(b"short").decode()}]
)
async def test_a_broken_secret_is_reported_not_replaced(data: dict[str, str]) -> None:
    api = Secrets()
    api.stored[SEALING_KEY_SECRET] = {"metadata": {"name": SEALING_KEY_SECRET}, "data": data}
    with pytest.raises(ApiError, match="delete it to have a new"):
        await load_or_create(api, NS)  # type: ignore[arg-type]
    assert "create" not in " ".join(api.calls)
