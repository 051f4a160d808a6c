"""Hostile objects are refused at admission or reported on themselves, and the operator keeps
serving every other object: a good Coordination created after them still decides on time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from mabeam.kube.client import Kube
from mabeam.kube.resources import VARIABLE
from mabeam.local.apiserver._emulator import MAX_NESTING
from mabeam.local.cluster import LocalCluster
from tests.integration._coordination import NS, AsAgents, collecting, create_session, ended, suspended
from tests.integration._util import eventually

VARIABLES = f"/apis/mabeam.io/v1alpha1/namespaces/{NS}/variables"


async def post_raw(cluster: LocalCluster, path: str, body: str) -> tuple[int, str]:
    """POST a JSON text as is (json.dumps itself cannot write what a hostile client can)."""
    config = yaml.safe_load(Path(cluster.admin_kubeconfig).read_text())
    token = config["users"][0]["user"]["token"]  # the admin's, as the user's kubectl has it
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession(cluster.url, headers=headers) as http,
        http.post(path, data=body) as response,
    ):
        return response.status, await response.text()


def variable_text(name: str, value_json: str, type_: str = "string", **spec: Any) -> str:
    extra = "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in spec.items())
    return (
        f'{{"apiVersion": "mabeam.io/v1alpha1", "kind": "Variable", "metadata": {{"name": "{name}"}}, '
        f'"spec": {{"type": "{type_}", "value": {value_json}{extra}}}}}'
    )


async def invalid(kube: Kube, name: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await kube.get(VARIABLE, name, NS)
        st = (obj or {}).get("status") or {}
        valid = next((c for c in st.get("conditions") or [] if c.get("type") == "Valid"), {})
        return st if st.get("phase") == "Invalid" and valid.get("status") == "False" else None

    result: dict[str, Any] = await eventually(check, timeout=20, what=f"{name} reported Invalid")
    return result


async def test_poison_objects_are_reported_on_themselves_and_a_good_session_still_decides(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    # Nested deeper than the local API server decodes (MAX_NESTING): refused, never stored.
    abyss = MAX_NESTING + 1
    status, text = await post_raw(cluster, VARIABLES, variable_text("abyss", "[" * abyss + "]" * abyss))
    assert status == 400, text
    # Deep, but decodable: stored; the operator reports it Invalid on the object.
    deep = "[" * (MAX_NESTING - 2) + '"x"' + "]" * (MAX_NESTING - 2)  # in the body: 2 more (root, spec)
    status, text = await post_raw(cluster, VARIABLES, variable_text("deep", deep, "json"))
    assert status == 201, text
    # 100 000 items: stored; Invalid, with a status small enough to write.
    huge = "[" + ",".join(["1"] * 100_000) + "]"
    status, text = await post_raw(cluster, VARIABLES, variable_text("huge", huge, "json"))
    assert status == 201, text
    # A catastrophic pattern for a backtracking engine, and a value that would make it spin.
    evil = {"constraints": {"pattern": "^(a+)+$"}}
    status, text = await post_raw(cluster, VARIABLES, variable_text("evil", '"' + "a" * 60 + '!"', **evil))
    assert status == 201, text
    # An integer beyond 64 bits in fields the API server checks (with CEL): 422, not 500.
    big = variable_text("big", '"x"', constraints={"maxLength": 2**70})
    status, text = await post_raw(cluster, VARIABLES, big)
    assert status == 422, text

    names = ["ann", "ben", "cat"]
    await suspended(kube, names)
    await create_session(kube, "after", "majority", participants={"agents": names}, options=["a", "b"],
                         answerSeconds=30)  # fmt: skip
    await collecting(kube, "after", timeout=30)  # the operator is busy with the poison meanwhile
    for name in names:
        await as_agent.vote("after", name, choice="a")
    s = await ended(kube, "after", timeout=30)
    assert (s["phase"], s["result"]["value"]) == ("Decided", "a")

    for name, said in (("deep", "nested deeper than"), ("huge", "more than 10000 items"),
                       ("evil", "no match of the pattern")):  # fmt: skip
        st = await invalid(kube, name)
        valid = next(c for c in st["conditions"] if c["type"] == "Valid")
        assert said in valid["message"], valid
