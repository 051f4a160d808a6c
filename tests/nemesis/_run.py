"""One nemesis run: a seed's sessions under its schedule of faults, then the invariants."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mabeam.controller._sealing import _key_of
from mabeam.core.economics.sealing import SealingKey
from mabeam.core.variables_wire import settled
from mabeam.kube.permissions import SEALING_KEY_SECRET
from mabeam.kube.resources import ACCOUNT, AGENT, SECRET, VARIABLE
from mabeam.models.coordination import answer_verdict
from tests.integration._fault_proxy import FAULTS, KILLS, FaultProxy, Rule

from ._invariants import check_locked_writes, check_money_conserved, check_session, check_variable
from ._sessions import ANSWER_OF, TERMINAL, Plan, agent_pool, draw_plans, drive
from ._target import OperatorProcess, Target

__all__ = ["Options", "Report", "run_seed"]

#: Each agent's budget when the nemesis runs with money: enough for most bids, not all of them.
BUDGET = 300
#: Each agent's slot-hours (the markets' good) when the nemesis runs with money.
GOODS = 100


@dataclass
class Options:
    sessions: int = 104
    #: The share of the operator's requests answered with a fault.
    rate: float = 0.10
    #: The share of watch events faulted (dropped stream, truncated, duplicated, reordered).
    watch_rate: float = 0.03
    #: Of the faults on mutating requests, one in ``kill_every`` is an operator SIGKILL.
    kill_every: int = 6
    #: At most this many SIGKILLs, at least ``kill_gap`` seconds apart (after the restart).
    max_kills: int = 30
    kill_gap: float = 5.0
    concurrency: int = 16
    #: Accounts for the agents (budget BUDGET each): every session then pays, and the money
    #: invariants are checked on the Accounts too.
    money: bool = False
    #: Only these kinds of session (labels of _sessions.KINDS); empty: all of them.
    kinds: tuple[str, ...] = ()
    #: How long a session may take beyond its deadline before it counts as stuck.
    slack: float = 90.0


@dataclass
class Report:
    seed: int
    plans: list[Plan]
    injected: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    operator_starts: int = 0
    options_money: bool = False
    money: str = ""

    @property
    def faults(self) -> int:
        return sum(self.injected.values())

    def table(self) -> str:
        ok = not self.violations
        lines = [f"nemesis seed {self.seed}: {len(self.plans)} sessions in {self.seconds:.0f} s, "
                 f"{self.faults} faults injected, {len(self.violations)} invariant violations"]  # fmt: skip
        lines.append(f"  {'fault':<22}{'injected':>9}{'survived':>10}")
        for fault, n in sorted(self.injected.items()):
            lines.append(f"  {fault:<22}{n:>9}{(n if ok else 0):>10}")
        gave_up = sum(p.gave_up for p in self.plans)
        if gave_up:
            lines.append(f"  locked writes given up (the Variable stayed busy): {gave_up}")
        lines.append(f"  operator started {self.operator_starts} times")
        if self.money:
            lines.append(f"  money: {self.money}")
        kinds = Counter((p.kind, p.label) for p in self.plans)
        lines.append("  sessions: " + ", ".join(f"{label} {n}" for (_, label), n in sorted(kinds.items())))
        lines.append(
            "  outcomes: "
            + ", ".join(f"{label} {phase} {n}" for (label, phase), n in sorted(self.outcomes.items()))
        )
        lines += [f"  VIOLATION {v}" for v in self.violations[:50]]
        return "\n".join(lines)


def _rules(options: Options) -> list[Rule]:
    path = r"^/apis/(mabeam\.io|coordination\.k8s\.io)/"
    mutating = (*FAULTS * (options.kill_every - 1), *KILLS) if options.kill_every > 0 else FAULTS
    # Sealing key and Events: faulted too (any request of the operator may fail).
    reads = tuple(f for f in FAULTS if f != "409")
    return [
        Rule(method="POST|PUT|PATCH|DELETE", path=path, rate=options.rate, faults=mutating),
        Rule(method="GET", path=path, rate=options.rate, faults=reads),
        Rule(method="GET|POST|PUT|PATCH", path=r"^/api/v1/", rate=options.rate / 2, faults=reads),
    ]


async def _settle(target: Target, plans: list[Plan], timeout: float) -> None:
    """Wait (faults off) until every session has ended, applied its outcome and judged every
    answer's current version; what is still missing then is reported by the invariants."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = list(plans)
    while pending and loop.time() < deadline:
        still = []
        for plan in pending:
            variables = [await target.admin.get(VARIABLE, v, target.namespace) for v in plan.variables]
            if not all(v is not None and settled(v) for v in variables):
                still.append(plan)
                continue
            if plan.res is None:
                continue
            body = await target.admin.get(plan.res, plan.name, target.namespace)
            st = (body or {}).get("status") or {}
            done = st.get("phase") in TERMINAL[plan.res] and (
                st.get("outcomeApplied") or not _has_effect(plan, st)
            )
            if done:
                answers = await target.admin.list(
                    ANSWER_OF[plan.res], target.namespace, labels={"mabeam.io/session": plan.name}
                )
                done = all(answer_verdict(a, body) is not None for a in answers)
            if not done:
                still.append(plan)
        pending = still
        if pending:
            await asyncio.sleep(0.5)


def _has_effect(plan: Plan, status: dict[str, Any]) -> bool:
    result = status.get("result") or {}
    if plan.kind == "coordination":
        return status.get("phase") == "Decided" and bool(plan.variables) and result.get("value") is not None
    if plan.kind == "auction":
        return status.get("phase") == "Awarded" and bool(result.get("allocations"))
    return status.get("phase") == "Cleared" and bool(plan.variables)


async def run_seed(target: Target, seed: int, options: Options) -> Report:
    started = time.monotonic()
    pool = agent_pool()
    for name, spec in pool.items():
        await target.admin.create(AGENT, {
            "metadata": {"name": name, "namespace": target.namespace},
            "spec": {"suspend": True, **spec, "template": {"spec": {"containers": [
                {"name": "agent", "image": "example/agent:1", "command": ["sleep", "3600"]}]}}},
        })  # fmt: skip
    await target.prepare_agents(sorted(pool))
    if options.money:
        for name in pool:
            await target.admin.create(
                ACCOUNT,
                {
                    "metadata": {"name": name, "namespace": target.namespace},
                    # Market sellers must own what they sell: enough slot-hours for every market.
                    "spec": {"budget": BUDGET, "goods": {"slot-hours": GOODS}},
                },
            )
    operator = OperatorProcess(target.workdir, {"MABEAM_RETRY_SECONDS": "0.1", **target.operator_env})
    report = Report(seed, [], options_money=options.money)
    state = {"restarting": False, "kills": 0, "next": 0.0}
    restarts: set[asyncio.Task[None]] = set()
    kubeconfig = target.workdir / f"operator-nemesis-{seed}.kubeconfig"

    async def restart() -> None:
        assert operator.process is not None
        await operator.process.wait()
        await operator.start(kubeconfig)
        state["next"] = asyncio.get_running_loop().time() + options.kill_gap
        state["restarting"] = False

    async def killer(fault: str) -> bool:
        loop = asyncio.get_running_loop()
        if state["restarting"] or state["kills"] >= options.max_kills or loop.time() < state["next"]:
            return False
        if not operator.kill():
            return False
        state["restarting"] = True
        state["kills"] += 1
        task = asyncio.create_task(restart())
        restarts.add(task)
        task.add_done_callback(restarts.discard)
        return True

    proxy = FaultProxy(
        target.upstream,
        _rules(options),
        seed=seed,
        watch_rate=options.watch_rate,
        killer=killer,
        ssl=target.ssl,
    )
    async with proxy:
        proxy.kubeconfig(target.operator_kubeconfig, kubeconfig)
        await operator.start(kubeconfig)
        try:
            report.plans = draw_plans(seed, options.sessions, pool, options.kinds)
            await drive(target, report.plans, options.concurrency, options.slack)
            # The faults stop; what the sessions left to do is done, then everything is checked.
            proxy.rules.clear()
            proxy.watch_rate = 0.0
            if restarts:
                await asyncio.gather(*restarts)
            await _settle(target, report.plans, options.slack)
            report.injected.update(proxy.injected)
            for plan in report.plans:
                for _agent, behaviour in plan.behaviours.items():
                    if behaviour != "normal":
                        report.injected[f"agent-{behaviour}"] += 1
            report.violations = await _check(target, report)
        finally:
            report.operator_starts = operator.starts
            await operator.stop()
            for task in list(restarts):
                task.cancel()
    report.seconds = time.monotonic() - started
    return report


async def _check(target: Target, report: Report) -> list[str]:
    admin, ns = target.admin, target.namespace
    secret = await admin.get(SECRET, SEALING_KEY_SECRET, target.operator_namespace)
    key: SealingKey | None = _key_of(secret, target.operator_namespace) if secret else None
    agents = {a["metadata"]["name"]: a.get("spec") or {} for a in await admin.list(AGENT, ns)}
    variables = {v["metadata"]["name"]: v for v in await admin.list(VARIABLE, ns)}
    violations: list[str] = []
    bodies: dict[str, dict[str, Any] | None] = {}
    for plan in report.plans:
        history = {v: target.history(VARIABLE, v) for v in plan.variables}
        for var in plan.variables:
            violations += check_variable(var, variables.get(var), history[var])
        if plan.res is None:
            (var,) = plan.variables
            found = check_locked_writes(plan, variables.get(var))
            if found:
                evidence = {"plan": dataclasses.asdict(plan), "variables": history}
                path = target.workdir / f"violation-{plan.name}.json"
                path.write_text(json.dumps(evidence, indent=1, default=str))
                found.append(f"{plan.name}: evidence in {path}")
            violations += found
            continue
        body = await admin.get(plan.res, plan.name, ns)
        bodies[plan.name] = body
        answers = await admin.list(ANSWER_OF[plan.res], ns, labels={"mabeam.io/session": plan.name})
        versions = target.history(plan.res, plan.name)
        try:
            found = check_session(plan, body, versions, answers, variables, history, agents, key)
        except Exception as exc:  # a check that cannot run is a violation too
            found = [f"{plan.name}: the check failed: {type(exc).__name__}: {exc}"]
        if found:
            evidence = {"plan": dataclasses.asdict(plan), "versions": versions, "answers": answers,
                        "variables": {v: history[v] for v in plan.variables}}  # fmt: skip
            path = target.workdir / f"violation-{plan.name}.json"
            path.write_text(json.dumps(evidence, indent=1, default=str))
            found.append(f"{plan.name}: evidence in {path}")
        violations += found
        phase = ((body or {}).get("status") or {}).get("phase", "?")
        report.outcomes[(plan.label, phase)] += 1
    accounts = await admin.list(ACCOUNT, ns) if report.options_money else []
    if accounts:
        paid = sum(1 for b in bodies.values() if ((b or {}).get("status") or {}).get("payment") == "Ledger")
        moved = sum(
            1 for a in accounts for e in ((a.get("status") or {}).get("entries") or [])
            if e.get("reason") in ("Payment", "Receipt")
        )  # fmt: skip
        report.money = (
            f"{len(accounts)} Accounts, {paid} sessions paid from them, {moved} payments and receipts"
        )
    violations += check_money_conserved(report.plans, bodies, accounts)
    return violations
