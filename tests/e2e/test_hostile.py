"""The hostile corpus (tests/hostile), all of it, against a real API server and the installed operator.

Its lists of invalid objects have 1 000 items here, not 10 000: the real API server's own
validation is quadratic in their errors (REAL_API_OBJECT_ITEMS in tests/hostile/corpus.py).

The same rules as on the emulator (tests/integration/test_hostile.py): never a 5xx, every
refusal names its field (or the body could not be decoded), every accepted manifest is reported
on its own object, and a good session created right after the corpus decides on time.
"""

from __future__ import annotations

import time
from typing import Any

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, COORDINATION, VOTE
from tests.e2e._helpers import eventually
from tests.hostile.apply import apply_corpus, check_refusals, summary, targets, wait_reported
from tests.hostile.corpus import REAL_API_OBJECT_ITEMS, corpus

#: From the good session's creation to its decision, after the corpus.
ON_TIME = 20.0


def suspended_agent(name: str, ns: str) -> dict[str, Any]:
    container = {"name": "agent", "image": "example/agent:1", "command": ["sleep", "3600"]}
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "capabilities": ["vote"],
            "suspend": True,
            "template": {"spec": {"containers": [container]}},
        },
    }


async def phase(kube: Kube, name: str, ns: str, phases: tuple[str, ...], timeout: float) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status = ((await kube.get(COORDINATION, name, ns)) or {}).get("status") or {}
        return status if status.get("phase") in phases else None

    result: dict[str, Any] = await eventually(check, timeout=timeout, what=f"{name} in {phases}")
    return result


async def test_the_hostile_corpus_is_refused_or_reported_and_a_good_session_still_decides(
    kube: Kube, ns: str
) -> None:
    names = ["ann", "ben", "cat"]
    for name in names:
        await kube.create(AGENT, suspended_agent(name, ns))
    await targets(kube, ns, ["ann", "ben"])

    outcomes = await apply_corpus(kube, ns, corpus(object_items=REAL_API_OBJECT_ITEMS))
    print(summary(outcomes))
    accepted = check_refusals(outcomes)

    started = time.monotonic()
    await kube.create(COORDINATION, {"metadata": {"name": "good", "namespace": ns}, "spec": {
        "protocol": "majority", "participants": {"agents": names}, "options": ["a", "b"],
        "answerSeconds": 60}})  # fmt: skip
    await phase(kube, "good", ns, ("Collecting",), ON_TIME)
    for name in names:  # written by a person (the admin), in each agent's name: admission allows it
        await kube.create(VOTE, {
            "metadata": {"name": f"good-{name}", "namespace": ns, "labels": {"mabeam.io/session": "good"}},
            "spec": {"session": "good", "agent": name, "choice": "a"},
        })  # fmt: skip
    s = await phase(kube, "good", ns, ("Decided", "NoDecision", "Failed", "Cancelled"), ON_TIME)
    assert (s["phase"], s["result"]["value"]) == ("Decided", "a")
    assert time.monotonic() - started < ON_TIME

    await wait_reported(kube, ns, accepted, timeout=120)
