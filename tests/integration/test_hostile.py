"""The hostile corpus (tests/hostile) against the operator on the local control plane.

Every manifest is refused with a field path (or, not decodable, with a 400) or reported on its
own object, the API server never answers 5xx, and a good session created right after the corpus
decides on time while the operator still works through it. ``make test`` applies a covering part
of the corpus (every hostile value for every kind, the heavy ones once); ``MABEAM_HOSTILE=full``
applies all of it.
"""

from __future__ import annotations

import os
import time

from mabeam.kube.client import Kube
from mabeam.local.cluster import LocalCluster
from tests.hostile.apply import apply_corpus, check_refusals, targets, wait_reported
from tests.hostile.corpus import corpus, reduced
from tests.integration._coordination import (
    NS,
    AsAgents,
    collecting,
    create_session,
    ended,
    suspended,
)

#: How long a good session may take, from its creation to its decision, after the corpus.
ON_TIME = 10.0


async def test_the_hostile_corpus_is_refused_or_reported_and_a_good_session_still_decides(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["ann", "ben", "cat"]
    await suspended(kube, names)
    await targets(kube, NS, ["ann", "ben"])

    items = corpus() if os.environ.get("MABEAM_HOSTILE") == "full" else reduced(corpus())
    accepted = check_refusals(await apply_corpus(kube, NS, items))

    started = time.monotonic()
    await create_session(kube, "good", "majority", participants={"agents": names}, options=["a", "b"],
                         answerSeconds=30)  # fmt: skip
    await collecting(kube, "good", timeout=ON_TIME)
    for name in names:
        await as_agent.vote("good", name, choice="a")
    s = await ended(kube, "good", timeout=ON_TIME)
    assert (s["phase"], s["result"]["value"]) == ("Decided", "a")
    assert time.monotonic() - started < ON_TIME

    await wait_reported(kube, NS, accepted, timeout=30)
