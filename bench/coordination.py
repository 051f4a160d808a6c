"""Sessions: API requests per session, sessions per second and last answer -> outcome, every kind.

Every session kind goes through the operator (its own process, as in a cluster) on the local
API server: a majority vote, each auction mechanism (first-price, second-price, combinatorial,
english, dutch) and a market (double auction). Each participant answers with its own
ServiceAccount token, 32 writes in flight. Each figure is printed beside its floor, measured in
the same run against the same API server:

- API requests per session (the operator's and the agents', from the API server's audit log):
  the floor is participants + 1, one answer per participant plus one status write;
- sessions per second: the floor by hand is the same writes done without the operator at the
  same concurrency (the N answers of a session, then one status PATCH), one session after the
  other (or ``--concurrent`` sessions at once);
- last answer -> outcome (p50 and p95): all but the last participant answer first and are
  counted (the outcome stays open); the clock runs from writing the last answer until a
  watching client sees the outcome (Decided, Awarded, Cleared, ...). Its floor is one status
  PATCH, the least the operator must write after the last answer.

``--concurrent K`` runs K sessions at once per kind (every participant answers at once): the
sessions per second against K floors by hand at once, the p95 from each session's last answer
to its outcome, and the sessions that did not end as expected (errors).

    python bench/coordination.py [--participants 50] [--sessions 10] [--kinds vote dutch ...]
                                 [--concurrent K] [--quick]
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import collections
import contextlib
import json
import re
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mabeam.kube.client import AlreadyExistsError, Kube
from mabeam.kube.resources import (
    AGENT,
    AUCTION,
    BID,
    COORDINATION,
    MARKET,
    ORDER,
    ROLE_BINDING,
    SERVICE_ACCOUNT,
    VARIABLE,
    VOTE,
    Res,
)
from mabeam.local.apiserver import AuditRecord
from mabeam.local.cluster import OPERATOR_IDENTITY, LocalCluster
from mabeam.models._sealed import SealingInfo
from mabeam.models.auction import BidContent, Bundle, bid_name
from mabeam.models.coordination import answer_verdict, vote_name
from mabeam.models.market import OrderContent, order_name
from mabeam.sdk._trading import seal_bid, seal_order

NS = "default"
IN_FLIGHT = 32
OPERATOR_USER = OPERATOR_IDENTITY
#: Operator requests that belong to the Agent loops, not to sessions.
AGENT_LOOP = {("agents", "get"), ("agents", "patch"), ("agents/status", "patch")}


@dataclass(frozen=True)
class Request:
    """One request in an API server's audit log: who did what."""

    user: str
    verb: str
    resource: str
    subresource: str | None


class Plane(abc.ABC):
    """An API server with the operator running against it: an admin client, a kubeconfig per
    agent (its own ServiceAccount credentials) and the audit log's requests."""

    kube: Kube
    operator_user: str
    #: how long after a request its audit record surely is readable
    audit_delay: float = 0.0

    @abc.abstractmethod
    async def kubeconfig(self, agent: str) -> Path:
        """A kubeconfig with ``agent``'s own ServiceAccount credentials."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget the requests so far: ``requests`` returns the ones after this call."""

    @abc.abstractmethod
    def requests(self) -> list[Request]:
        """The requests since ``clear``, from the API server's audit log."""


class LocalPlane(Plane):
    """``mabeam local``: the emulator in this process, the operator in its own."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster, self.kube, self.operator_user = cluster, cluster.client(), OPERATOR_USER

    async def kubeconfig(self, agent: str) -> Path:
        return self.cluster.api.kubeconfig(
            self.cluster.workdir / f"{agent}.kubeconfig",
            user=f"system:serviceaccount:{NS}:mabeam-agent-{agent}",
        )

    def clear(self) -> None:
        self.cluster.api.emulator.audit.clear()

    def requests(self) -> list[Request]:
        return [Request(r.user, r.verb, r.resource, r.subresource) for r in self.cluster.api.audit]


class RealPlane(Plane):
    """The real control plane of ``make e2e`` (``bench/scale.py``'s), with an audit log written
    in batches of at most a second; agents authenticate with tokens from the TokenRequest API."""

    audit_delay = 1.5

    def __init__(self, plane: Any, kube: Kube, operator_user: str, workdir: Path) -> None:
        self.plane, self.kube, self.operator_user, self.workdir = plane, kube, operator_user, workdir
        self.offset = 0
        self.since: list[Request] = []
        self.admin = yaml.safe_load(plane.admin_kubeconfig.read_text())

    async def kubeconfig(self, agent: str) -> Path:
        from lightkube.models.authentication_v1 import TokenRequestSpec
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import ServiceAccount

        account = f"mabeam-agent-{agent}"
        with contextlib.suppress(AlreadyExistsError):
            await self.kube.create(SERVICE_ACCOUNT, {"metadata": {"name": account, "namespace": NS}})
        request = ServiceAccount.Token(
            metadata=ObjectMeta(), spec=TokenRequestSpec(audiences=[], expirationSeconds=86400)
        )
        answer = await self.kube.client.create(request, name=account, namespace=NS)
        path = self.workdir / f"{agent}.kubeconfig"
        path.write_text(yaml.safe_dump({
            **self.admin,
            "users": [{"name": "sa", "user": {"token": answer.status.token}}],
            "contexts": [{"name": "mabeam", "context": {"cluster": "mabeam", "user": "sa"}}],
            "current-context": "mabeam",
        }))  # fmt: skip
        return path

    def clear(self) -> None:
        self.requests()  # read up to the end: what follows is new
        self.since = []

    def requests(self) -> list[Request]:
        from scale import rotated

        path = self.plane.audit_log
        if not path.exists():
            return list(self.since)
        with open(path, "rb") as f:
            rotated(f, self.offset)
            f.seek(self.offset)
            for line in f:
                if not line.endswith(b"\n"):
                    break
                self.offset += len(line)
                record = json.loads(line)
                ref = record.get("objectRef") or {}
                self.since.append(Request((record.get("user") or {}).get("username", "?"),
                                          record.get("verb", "?"), ref.get("resource", "?"),
                                          ref.get("subresource")))  # fmt: skip
        return list(self.since)


class Voters:
    """One client per agent, with its own ServiceAccount credentials; IN_FLIGHT writes at once."""

    def __init__(self, configs: dict[str, Path]) -> None:
        self.clients = {name: Kube.connect(path, namespace=NS) for name, path in configs.items()}
        self.limit = asyncio.Semaphore(IN_FLIGHT)

    @classmethod
    async def local(cls, cluster: LocalCluster, names: list[str]) -> Voters:
        plane = LocalPlane(cluster)
        return cls({name: await plane.kubeconfig(name) for name in names})

    async def write(self, res: Res, agent: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.limit:
            return await self.clients[agent].create(res, body)

    async def vote(self, session: str, agent: str, choice: str) -> None:
        await self.write(VOTE, agent, answer_body(VOTE, session, agent, {"choice": choice}))

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


def answer_body(res: Res, session: str, agent: str, fields: dict[str, Any]) -> dict[str, Any]:
    name, ref = {
        VOTE.kind: (vote_name(session, agent), "session"),
        BID.kind: (bid_name(session, agent), "auction"),
        ORDER.kind: (order_name(session, agent), "market"),
    }[res.kind]
    return {
        "metadata": {"name": name, "namespace": NS,
                     "labels": {"mabeam.io/session": session, "mabeam.io/agent": agent}},
        "spec": {ref: session, "agent": agent, **fields},
    }  # fmt: skip


def choice(i: int) -> str:
    return "x" if i % 2 == 0 else "y"


# --- the session kinds -------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """How to run one kind of session whose last answer decides it."""

    name: str
    res: Res
    answer_res: Res
    open_phases: frozenset[str]
    outcome: str  # the phase a watching client waits for
    spec: Callable[[str, list[str]], dict[str, Any]]
    #: (session name, session body once open, agent, index, is it the last) -> the answer's spec fields
    answer: Callable[[str, dict[str, Any], str, int, bool], dict[str, Any]]
    items: bool = False  # sells an item (a Variable named after the session)


def _sealing(body: dict[str, Any]) -> tuple[SealingInfo, str]:
    return SealingInfo.model_validate(body["status"]["sealing"]), str(body["metadata"]["uid"])


def _sealed_bid(amount: float) -> Callable[[str, dict[str, Any], str, int, bool], dict[str, Any]]:
    def answer(session: str, body: dict[str, Any], agent: str, i: int, last: bool) -> dict[str, Any]:
        info, uid = _sealing(body)
        content = BidContent(amount=amount + i + (100 if last else 0))
        return {"sealed": seal_bid(info, uid, agent, content).to_wire()}

    return answer


def _combinatorial(session: str, body: dict[str, Any], agent: str, i: int, last: bool) -> dict[str, Any]:
    info, uid = _sealing(body)
    content = BidContent(bundles=[Bundle(items=[session], amount=10 + i + (100 if last else 0))])
    return {"sealed": seal_bid(info, uid, agent, content).to_wire()}


def _clock(session: str, body: dict[str, Any], agent: str, i: int, last: bool) -> dict[str, Any]:
    return {"round": 1, "accept": last}  # everyone else drops out (english) or passes (dutch)


def _order(session: str, body: dict[str, Any], agent: str, i: int, last: bool) -> dict[str, Any]:
    info, uid = _sealing(body)
    side = "buy" if i % 2 == 0 else "sell"
    content = OrderContent(side=side, price=50 + (i % 7) * (1 if side == "buy" else -1), quantity=1)
    return {"sealed": seal_order(info, uid, agent, content).to_wire()}


def _vote(session: str, body: dict[str, Any], agent: str, i: int, last: bool) -> dict[str, Any]:
    return {"choice": "x" if last else choice(i)}


def _auction(mechanism: str, **extra: Any) -> Callable[[str, list[str]], dict[str, Any]]:
    def spec(name: str, names: list[str]) -> dict[str, Any]:
        return {"mechanism": mechanism, "participants": {"agents": names}, "items": [name],
                "reservePrice": 1, "bidSeconds": 120, "roundSeconds": 120, **extra}  # fmt: skip

    return spec


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("vote", COORDINATION, VOTE, frozenset({"Collecting"}), "Decided",
             lambda n, names: {"protocol": "majority", "participants": {"agents": names},
                               "options": ["x", "y"], "answerSeconds": 120}, _vote),
        Kind("first-price", AUCTION, BID, frozenset({"Bidding"}), "Awarded", _auction("first-price"),
             _sealed_bid(10), items=True),
        Kind("second-price", AUCTION, BID, frozenset({"Bidding"}), "Awarded", _auction("second-price"),
             _sealed_bid(10), items=True),
        Kind("combinatorial", AUCTION, BID, frozenset({"Bidding"}), "Awarded", _auction("combinatorial"),
             _combinatorial, items=True),
        Kind("english", AUCTION, BID, frozenset({"Bidding"}), "Awarded",
             _auction("english", startPrice=5, increment=1), _clock, items=True),
        Kind("dutch", AUCTION, BID, frozenset({"Bidding"}), "Awarded",
             _auction("dutch", startPrice=50, decrement=1), _clock, items=True),
        Kind("market", MARKET, ORDER, frozenset({"Collecting"}), "Cleared",
             lambda n, names: {"mechanism": "double-auction", "participants": {"agents": names},
                               "good": "cpu", "orderSeconds": 120}, _order),
    )
}  # fmt: skip


# --- watching ------------------------------------------------------------------------------------


class Watcher:
    """One watch per session kind: the latest body of every session and when each phase was first seen."""

    def __init__(self, kube: Kube, res: Res) -> None:
        self.kube, self.res = kube, res
        self.bodies: dict[str, dict[str, Any]] = {}
        self.phase_seen: dict[tuple[str, str], float] = {}
        self.changed = asyncio.Condition()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            async for _, obj in self.kube.watch(self.res, NS):
                name = obj["metadata"]["name"]
                self.bodies[name] = obj
                phase = (obj.get("status") or {}).get("phase")
                if phase is not None:
                    self.phase_seen.setdefault((name, phase), time.monotonic())
                async with self.changed:
                    self.changed.notify_all()

    async def until(self, test: Callable[[], Any]) -> Any:
        async with self.changed:
            while not (result := test()):
                await self.changed.wait()
            return result

    async def in_phase(self, name: str, phases: frozenset[str] | set[str]) -> dict[str, Any]:
        def test() -> dict[str, Any] | None:
            body = self.bodies.get(name)
            return body if body and (body.get("status") or {}).get("phase") in phases else None

        result: dict[str, Any] = await self.until(test)
        return result

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def judged(body: dict[str, Any], agents: list[str]) -> bool:
    """Whether the session's status shows a verdict on each agent's answer (counted or refused)."""
    status = body.get("status") or {}
    seen = {c.get("agent") for c in status.get("counted") or ()}
    seen |= {r.get("agent") for r in status.get("refusals") or ()}
    return all(a in seen for a in agents)


def terminal(body: dict[str, Any]) -> bool:
    return (body.get("status") or {}).get("phase") not in (
        None,
        "Pending",
        "Collecting",
        "Bidding",
        "Deciding",
    )


# --- one session -----------------------------------------------------------------------------------


async def run_session(
    kind: Kind, kube: Kube, voters: Voters, watcher: Watcher, name: str, names: list[str], *, split: bool
) -> tuple[float, str]:
    """One session of ``kind`` whose last answer decides it: (last answer -> outcome seen, final phase).

    With ``split`` all but the last participant answer first and are counted before the last one
    answers (the latency is the operator's reaction to that one answer); otherwise all at once.
    """
    async with voters.limit:  # the sessions' creates share the answers' IN_FLIGHT (else a pool times out)
        body = {"metadata": {"name": name, "namespace": NS}, "spec": kind.spec(name, names)}
        await kube.create(kind.res, body)
    body = await watcher.in_phase(name, kind.open_phases | {"Failed"})
    if (body.get("status") or {}).get("phase") == "Failed":
        return float("nan"), "Failed"
    answers = {
        a: answer_body(kind.answer_res, name, a, kind.answer(name, body, a, i, i == len(names) - 1))
        for i, a in enumerate(names)
    }
    *early, last = names
    await asyncio.gather(*(voters.write(kind.answer_res, a, answers[a]) for a in early))
    if split:
        await watcher.until(lambda: judged(watcher.bodies[name], early) or terminal(watcher.bodies[name]))
    await voters.write(kind.answer_res, last, answers[last])
    t_last = time.monotonic()  # the API server accepted the last answer
    body = await watcher.until(lambda: terminal(watcher.bodies[name]) and watcher.bodies[name])
    phase = str(body["status"]["phase"])
    seen = watcher.phase_seen.get((name, phase), time.monotonic())
    return max(seen - t_last, 0.0), phase


async def floor_session(
    kind: Kind, kube: Kube, voters: Voters, name: str, names: list[str], sample: dict[str, Any]
) -> None:
    """The same writes by hand, with no operator involved: N answers (to a session that does not
    exist), then one status PATCH of an existing session."""
    await asyncio.gather(*(
        voters.write(kind.answer_res, a, answer_body(kind.answer_res, name, a,
                                                     kind.answer(name, sample, a, i, i == len(names) - 1)))
        for i, a in enumerate(names)
    ))  # fmt: skip
    await kube.patch(kind.res, sample["metadata"]["name"],
                     {"status": {"observedGeneration": sample["metadata"]["generation"]}},
                     namespace=NS, status=True)  # fmt: skip


def session_requests(
    records: Iterable[Request | AuditRecord], users: set[str], operator: str, *, others: bool = False
) -> collections.Counter[tuple[str, str]]:
    """The requests of ``users`` that sessions make; with ``others``, the ones left out instead
    (the Agent loops', and pods, ServiceAccounts, RoleBindings, Leases and ConfigMaps)."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for r in records:
        if r.user not in users or r.verb == "watch":
            continue
        plural = r.resource.rsplit("/", 1)[-1] + (f"/{r.subresource}" if r.subresource else "")
        left_out = (r.user == operator and (plural, r.verb) in AGENT_LOOP) or plural.split("/")[0] in (
            "pods", "serviceaccounts", "rolebindings", "leases", "configmaps",
        )  # fmt: skip
        if left_out == others:
            counts[(plural, r.verb)] += 1
    return counts


async def suspended_agents(kube: Kube, n: int) -> list[str]:
    """``n`` Agents without Pods (nothing to schedule), bound to the agents' ClusterRole so that
    each can answer with its own ServiceAccount token."""
    names = [f"p{i:04d}" for i in range(n)]
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def create(a: str) -> None:
        async with limit:
            await kube.create(AGENT, {
                "metadata": {"name": a, "namespace": NS},
                "spec": {"suspend": True, "template": {"spec": {"containers": [
                    {"name": "a", "image": "x", "command": ["sleep", "1"]}]}}},
            })  # fmt: skip

    await asyncio.gather(*(create(a) for a in names))
    await kube.create(ROLE_BINDING, {
        "metadata": {"name": "bench-agents", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "mabeam-agent"},
        "subjects": [{"kind": "ServiceAccount", "name": f"mabeam-agent-{a}", "namespace": NS} for a in names],
    })  # fmt: skip
    return names


# --- what bench/economics.py uses --------------------------------------------------------------


async def verdicts_written(kube: Kube, session: str, n: int) -> None:
    """Until ``n`` Votes of ``session`` have a verdict (on the Vote, or counted in the session)."""
    while True:
        body = await kube.get(COORDINATION, session, NS)
        votes = await kube.list(VOTE, NS, labels={"mabeam.io/session": session})
        if sum(1 for v in votes if answer_verdict(v, body) is not None) >= n:
            return
        await asyncio.sleep(0.01)


async def one_session(kube: Kube, voters: Voters, name: str, names: list[str]) -> tuple[float, float]:
    """A majority vote whose last answer decides it: (last answer -> Decided seen, wall time)."""
    start = time.monotonic()
    watcher = Watcher(kube, COORDINATION)
    try:
        latency, _ = await run_session(KINDS["vote"], kube, voters, watcher, name, names, split=True)
    finally:
        await watcher.close()
    return latency, time.monotonic() - start


# --- the benchmark ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def bench_kind(
    kind: Kind, plane: Plane, voters: Voters, names: list[str], users: set[str], sessions: int,
    concurrent: int,
) -> dict[str, Any]:  # fmt: skip
    kube = plane.kube
    watcher = Watcher(kube, kind.res)
    if kind.items:  # the items for sale, made (and reconciled) before anything is measured
        count = sessions if concurrent <= 1 else concurrent
        prefix = f"{kind.name}-{'c' if concurrent > 1 else ''}"
        await asyncio.gather(*(kube.create(VARIABLE, {"metadata": {"name": f"{prefix}{s}", "namespace": NS},
                                                      "spec": {"type": "string", "value": "slot"}})
                               for s in range(count)))  # fmt: skip
        await asyncio.sleep(1.0 + count / 100)
    await asyncio.sleep(0.05)  # the watch is established
    n = len(names)
    try:
        latencies: list[float] = []
        requests: list[collections.Counter[tuple[str, str]]] = []
        phases: collections.Counter[str] = collections.Counter()
        others: collections.Counter[tuple[str, str]] = collections.Counter()  # not the sessions'
        failures: collections.Counter[str] = collections.Counter()  # the exceptions, by kind
        errors = 0
        t = time.perf_counter()
        if concurrent <= 1:
            busy = 0.0  # the sessions' own wall time, without the pauses between them
            for s in range(sessions):
                plane.clear()
                started = time.perf_counter()
                latency, phase = await run_session(
                    kind, kube, voters, watcher, f"{kind.name}-{s}", names, split=True
                )
                busy += time.perf_counter() - started
                # the operator's last writes and events, and their audit records (not timed)
                await asyncio.sleep(0.3 + plane.audit_delay)
                latencies.append(latency)
                phases[phase] += 1
                requests.append(session_requests(plane.requests(), users, plane.operator_user))
            count = sessions
        else:
            plane.clear()
            results = await asyncio.gather(*(
                run_session(kind, kube, voters, watcher, f"{kind.name}-c{s}", names, split=False)
                for s in range(concurrent)
            ), return_exceptions=True)  # fmt: skip
            for r in results:
                if isinstance(r, BaseException):
                    errors += 1
                    message = re.sub(rf"{kind.name}-c[0-9]+", "<session>", str(r))[:160]
                    failures[f"{type(r).__name__}: {message}"] += 1
                    continue
                latencies.append(r[0])
                phases[r[1]] += 1
            count = concurrent
        elapsed = time.perf_counter() - t if concurrent > 1 else busy
        if concurrent > 1:
            await asyncio.sleep(1.0 + plane.audit_delay)
            seen = plane.requests()
            total = session_requests(seen, users, plane.operator_user)
            requests = [collections.Counter({k: v / concurrent for k, v in total.items()})]
            others = session_requests(seen, users, plane.operator_user, others=True)
        errors += sum(c for p, c in phases.items() if p != kind.outcome)
        # The floor by hand: the same answers and one status write per session, same concurrency.
        sample = watcher.bodies[f"{kind.name}-{'c' if concurrent > 1 else ''}0"]
        floor_sessions = min(count, 10) if concurrent <= 1 else concurrent
        t = time.perf_counter()
        if concurrent <= 1:
            for s in range(floor_sessions):
                await floor_session(kind, kube, voters, f"floor-{kind.name}-{s}", names, sample)
        else:
            await asyncio.gather(*(floor_session(kind, kube, voters, f"floor-{kind.name}-c{s}", names, sample)
                                   for s in range(floor_sessions)))  # fmt: skip
        floor_rate = floor_sessions / (time.perf_counter() - t)
        patch_times = []
        for _ in range(20):
            t = time.perf_counter()
            await kube.patch(kind.res, sample["metadata"]["name"],
                             {"status": {"observedGeneration": sample["metadata"]["generation"]}},
                             namespace=NS, status=True)  # fmt: skip
            patch_times.append(time.perf_counter() - t)
    finally:
        await watcher.close()
    per_session = [sum(c.values()) for c in requests]
    merged: collections.Counter[tuple[str, str]] = collections.Counter()
    for c in requests:
        merged.update(c)
    return {
        "kind": kind.name, "n": n, "count": count, "rate": count / elapsed, "floor_rate": floor_rate,
        "p50": pct(latencies, 0.5) if latencies else float("nan"),
        "p95": pct(latencies, 0.95) if latencies else float("nan"),
        "patch": statistics.median(patch_times), "requests": statistics.median(per_session),
        "floor": n + 1, "errors": errors, "phases": dict(phases),
        "failures": failures, "others": others,
        "by_verb": {k: v / len(requests) for k, v in merged.items()},
    }  # fmt: skip


def report(r: dict[str, Any], verbose: bool) -> None:
    req_ratio, rate_ratio = r["requests"] / r["floor"], r["rate"] / r["floor_rate"]
    mode = "1 by 1" if r["concurrent"] <= 1 else f"{r['concurrent']} at once"
    print(f"{r['kind']:<14} {mode:>11} {r['n']:>5} {r['requests']:>8.1f} {r['floor']:>6} {req_ratio:>6.2f}x"
          f" {r['rate']:>8.2f} {r['floor_rate']:>8.2f} {rate_ratio:>6.2f}x"
          f" {r['p50'] * 1e3:>8.1f} {r['p95'] * 1e3:>8.1f}"
          f" {r['patch'] * 1e3:>7.1f} {r['errors']:>6}")  # fmt: skip
    if r["errors"]:
        wrong = {p: c for p, c in r["phases"].items() if p != KINDS[r["kind"]].outcome}
        print(f"{'':<16}errors: ended otherwise {wrong or 'none'}; raised:")
        for failure, count in r["failures"].most_common(5):
            print(f"{'':<18}{count:>5} x {failure}")
    if verbose:
        for (plural, verb), count in sorted(r["by_verb"].items(), key=lambda kv: -kv[1]):
            print(f"{'':<16}{plural:<28} {verb:<7} {count:8.1f}")
        for (plural, verb), count in r["others"].most_common(6):
            print(f"{'':<16}{plural:<28} {verb:<7} {count:8d} in all, not counted (Agent loops, pods, ...)")


@contextlib.asynccontextmanager
async def local_plane(workdir: Path, profile: str | None) -> AsyncIterator[Plane]:
    async with LocalCluster(workdir) as cluster:
        plane = LocalPlane(cluster)
        try:
            if profile:  # the operator under cProfile: its statistics are written when it stops
                await cluster.start_operator_process(
                    "-m", "cProfile", "-o", profile, "-m", "mabeam.cli", "run"
                )
            else:
                await cluster.start_operator_process()
            yield plane
        finally:
            await plane.kube.close()


@contextlib.asynccontextmanager
async def cluster_plane(workdir: Path) -> AsyncIterator[Plane]:
    from scale import real_plane

    async with real_plane(workdir) as (plane, kube, _, user):
        yield RealPlane(plane, kube, user, workdir)


async def main(
    n: int,
    sessions: int,
    kinds: list[str],
    concurrent: int,
    verbose: bool,
    profile: str | None,
    cluster: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        opened = cluster_plane(workdir) if cluster else local_plane(workdir, profile)
        async with opened as plane:
            names = await suspended_agents(plane.kube, n)
            limit = asyncio.Semaphore(IN_FLIGHT)

            async def config(agent: str) -> tuple[str, Path]:
                async with limit:
                    return agent, await plane.kubeconfig(agent)

            voters = Voters(dict(await asyncio.gather(*(config(a) for a in names))))
            await asyncio.sleep(2.0)  # let the Agent loops settle (they are not what is measured)
            users = {plane.operator_user, *(f"system:serviceaccount:{NS}:mabeam-agent-{a}" for a in names)}
            where = "the real control plane (kube-apiserver v1.37)" if cluster else "mabeam local"
            print(f"Sessions benchmark on {where}: {n} participants; per kind {sessions} sessions one by one"
                  + (f", then {concurrent} at once" if concurrent > 1 else "")
                  + "; operator in its own process\n")  # fmt: skip
            print(f"{'kind':<14} {'mode':>11} {'N':>5} {'req/sess':>8} {'floor':>6} {'ratio':>7}"
                  f" {'sess/s':>8} {'by hand':>8} {'ratio':>7} {'p50 ms':>8} {'p95 ms':>8} {'PATCH':>7}"
                  f" {'errors':>6}")  # fmt: skip
            try:
                for name in kinds:
                    kind = KINDS[name]
                    for at_once in (1, concurrent) if concurrent > 1 else (1,):
                        if at_once == 1 and sessions < 1:
                            continue
                        result = await bench_kind(kind, plane, voters, names, users, sessions, at_once)
                        result["concurrent"] = at_once
                        report(result, verbose)
            finally:
                await voters.close()
    print(
        "\nmode: sessions one after the other (all but the last answer first, counted, then the last) "
        "or K at once (every answer at once);\nreq/sess: API requests per session (operator and "
        "agents; p50), floor participants + 1; sess/s against the same writes by hand at the same "
        "concurrency;\np50/p95: from the API accepting the last answer to a watching client seeing the "
        "outcome, beside one status PATCH (median);\nerrors: sessions that failed or did not reach "
        "the expected outcome."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=20, help="then this many sessions at once per kind")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--verbose", action="store_true", help="requests by resource and verb")
    parser.add_argument(
        "--profile", metavar="FILE", help="run the operator under cProfile, its stats into FILE"
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 participants, 2 sessions per kind, 3 at once: that it runs"
    )
    parser.add_argument(
        "--cluster", action="store_true", help="on the real control plane of make e2e, not on mabeam local"
    )
    args = parser.parse_args()
    if args.cluster and args.profile:
        parser.error("--profile runs the operator of mabeam local under cProfile; on --cluster use py-spy")
    if args.quick:
        args.participants, args.sessions, args.concurrent = 5, 2, 3
    asyncio.run(
        main(
            args.participants,
            args.sessions,
            args.kinds,
            args.concurrent,
            args.verbose,
            args.profile,
            args.cluster,
        )
    )
