"""Apply the hostile corpus to an API server and judge what became of each manifest.

The rules (issue 16), whatever the control plane:

- the API server never answers 5xx;
- a refused manifest is refused with a message that names the field (its path, or the path of a
  field above it), or, for a body that cannot be decoded at all (not JSON, ``NaN``, ``1e400``,
  nested too deeply) or is too large to read, a 400 or a 413;
- an accepted manifest is reported on its own object by the operator: a phase (Agents,
  Variables, sessions) or a verdict (answers) for its current generation, and where that report
  is a failure (``Failed``, ``Invalid``, an answer refused), a message that says why.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, AUCTION, BID, COORDINATION, MARKET, ORDER, VARIABLE, VOTE, Res
from mabeam.models.coordination import answer_verdict
from tests.hostile.corpus import ANSWER_SESSION, Hostile
from tests.integration._util import eventually

__all__ = [
    "RESOURCES",
    "Outcome",
    "apply_corpus",
    "check_refusals",
    "field_named",
    "not_reported",
    "summary",
    "targets",
    "wait_reported",
]

RESOURCES: dict[str, Res] = {
    "Agent": AGENT,
    "Variable": VARIABLE,
    "Coordination": COORDINATION,
    "Vote": VOTE,
    "Auction": AUCTION,
    "Bid": BID,
    "Market": MARKET,
    "Order": ORDER,
}
#: How many requests are in flight at once.
CONCURRENCY = 8
#: How long a POST may wait for its answer: longer than the API server's own limit (a real
#: kube-apiserver answers 504 after 34 s for a write, 60 s at most), so that the verdict judged
#: is always the server's, never the client's patience (its default read timeout is 10 s, which
#: a megabyte body can exceed on a busy machine).
READ_TIMEOUT = 90.0


@dataclass
class Outcome:
    item: Hostile
    code: int
    message: str


def _http(kube: Kube) -> httpx.AsyncClient:
    """The HTTP client under the Kube client (its server and credentials), for raw bodies."""
    client: httpx.AsyncClient = kube.client._client._client
    return client


async def post(kube: Kube, namespace: str, item: Hostile) -> Outcome:
    path = f"/apis/mabeam.io/v1alpha1/namespaces/{namespace}/{item.plural}"
    response = await _http(kube).post(
        path,
        content=item.text.encode("utf-8", "surrogatepass"),
        headers={"Content-Type": "application/json"},
        timeout=httpx.Timeout(10.0, read=READ_TIMEOUT),
    )
    try:
        body = response.json()
        message = str(body.get("message", "")) if isinstance(body, dict) else response.text
    except ValueError:
        message = response.text
    return Outcome(item, response.status_code, message)


async def apply_corpus(kube: Kube, namespace: str, items: list[Hostile]) -> list[Outcome]:
    """POST every manifest (a few at a time); the outcomes in the corpus's order."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(item: Hostile) -> Outcome:
        async with limit:
            return await post(kube, namespace, item)

    return list(await asyncio.gather(*(one(i) for i in items)))


def field_named(outcome: Outcome) -> bool:
    """Whether a refusal says which field is wrong (or is a body no decoder could read)."""
    item, message = outcome.item, outcome.message
    if outcome.code in (400, 413):
        # Not decoded at all (not JSON, NaN, 1e400, nested beyond the decoder) or too large to
        # read: there is no field to name yet, as on a real API server.
        return True
    path = item.path
    candidates = {path}
    parts = path.split(".")
    candidates.update(".".join(parts[:n]) for n in range(2, len(parts)))
    if path == "spec" or path == "metadata":
        candidates.add(path)
    if item.kind in ANSWER_SESSION and path in (
        "metadata.name",
        "spec.agent",
        f"spec.{_session_field(item)}",
    ):
        # The name rule (<session>-<agent>) and the identity rule speak of both fields.
        candidates.update({"must be named", "spec.agent", "metadata.name"})
    return any(c and c in message for c in candidates)


def _session_field(item: Hostile) -> str:
    return {"Vote": "session", "Bid": "auction", "Order": "market"}[item.kind]


def _report(kind: str, obj: dict[str, Any], session: dict[str, Any] | None = None) -> tuple[bool, str | None]:
    """(reported for the current generation, why it failed or None). An answer's verdict is on
    it (a refusal) or in its session's ``status.counted`` (``answer_verdict``)."""
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    if kind in ANSWER_SESSION:
        verdict = answer_verdict(obj, session)
        if verdict is None:
            return False, None
        return True, None if verdict.get("accepted") else str(verdict.get("message") or "")
    phase = status.get("phase")
    invalid = any(
        c.get("type") == "Invalid" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    if not (phase or invalid) or status.get("observedGeneration") not in (generation, None):
        return False, None
    if phase not in ("Failed", "Invalid") and not invalid:
        return True, None
    messages = [
        str(c.get("message") or "")
        for c in status.get("conditions") or []
        if (c.get("status") == "True" and c.get("type") in ("Failed", "Invalid", "Stalled"))
        or (c.get("status") == "False" and c.get("type") in ("Valid", "Ready", "Reconciled"))
    ]
    return True, next((m for m in messages if m), "")


async def not_reported(kube: Kube, namespace: str, accepted: list[Hostile]) -> dict[str, str]:
    """The accepted manifests not (yet) reported on, or reported as failed without a message."""
    wanted: dict[str, set[str]] = {}
    for item in accepted:
        wanted.setdefault(item.kind, set()).add(item.name)
    missing: dict[str, str] = {}
    for kind, names in wanted.items():
        objs = {o["metadata"]["name"]: o for o in await kube.list(RESOURCES[kind], namespace)}
        for name in sorted(names):
            obj = objs.get(name)
            if obj is None:
                continue  # deleted (an answer's session gone, garbage collected): nothing to report on
            session = None
            if kind in ANSWER_SESSION:
                label = (obj["metadata"].get("labels") or {}).get("mabeam.io/session")
                session_kind = ANSWER_SESSION[kind][0]
                session = await kube.get(RESOURCES[session_kind], label, namespace) if label else None
            reported, failure = _report(kind, obj, session)
            if not reported:
                missing[f"{kind}/{name}"] = f"no report: status {obj.get('status')!r}"[:300]
            elif failure == "":
                missing[f"{kind}/{name}"] = f"failed without a message: {obj.get('status')!r}"[:300]
    return missing


async def wait_reported(kube: Kube, namespace: str, accepted: list[Hostile], timeout: float) -> None:
    last: dict[str, str] = {}

    async def check() -> bool:
        nonlocal last
        last = await not_reported(kube, namespace, accepted)
        return not last

    try:
        await eventually(check, timeout=timeout, interval=0.5, what="every accepted manifest reported")
    except AssertionError:
        raise AssertionError(f"{len(last)} accepted manifest(s) not reported: {last}") from None


def check_refusals(outcomes: list[Outcome]) -> list[Hostile]:
    """Fail on a 5xx or on a refusal that names no field; the accepted manifests."""
    errors = [f"{o.item.id}: {o.code} {o.message[:200]}" for o in outcomes if o.code >= 500]
    assert not errors, f"{len(errors)} server error(s):\n" + "\n".join(errors)
    unnamed = [
        f"{o.item.id}: {o.code} {o.message[:300]}"
        for o in outcomes
        if 400 <= o.code < 500 and not field_named(o)
    ]
    assert not unnamed, f"{len(unnamed)} refusal(s) name no field:\n" + "\n".join(unnamed)
    return [o.item for o in outcomes if o.code < 300]


async def _phase(kube: Kube, res: Res, namespace: str, name: str, phases: tuple[str, ...]) -> None:
    async def check() -> bool:
        obj = await kube.get(res, name, namespace)
        return ((obj or {}).get("status") or {}).get("phase") in phases

    await eventually(check, timeout=30, interval=0.1, what=f"{res.kind} {name} in {phases}")


async def targets(kube: Kube, namespace: str, participants: list[str]) -> None:
    """The sessions the corpus's answers answer, running (for two minutes)."""
    sessions = {kind: name for kind, name in ANSWER_SESSION.values()}
    chosen = {"agents": participants}
    await kube.create(VARIABLE, {"metadata": {"name": "slot", "namespace": namespace},
                                 "spec": {"type": "string", "value": "slot"}})  # fmt: skip
    bodies = {
        COORDINATION: {"protocol": "majority", "participants": chosen, "options": ["a", "b"],
                       "answerSeconds": 120},
        AUCTION: {"mechanism": "second-price", "participants": chosen, "items": ["slot"], "bidSeconds": 120},
        MARKET: {"mechanism": "double-auction", "participants": chosen, "good": "cpu", "orderSeconds": 120},
    }  # fmt: skip
    for res, spec in bodies.items():
        await kube.create(
            res, {"metadata": {"name": sessions[res.kind], "namespace": namespace}, "spec": spec}
        )
    await _phase(kube, COORDINATION, namespace, sessions["Coordination"], ("Collecting",))
    await _phase(kube, AUCTION, namespace, sessions["Auction"], ("Bidding",))
    await _phase(kube, MARKET, namespace, sessions["Market"], ("Collecting",))


def summary(outcomes: list[Outcome]) -> str:
    codes = Counter(o.code for o in outcomes)
    return f"{len(outcomes)} manifests: " + ", ".join(f"{n} x {c}" for c, n in sorted(codes.items()))
