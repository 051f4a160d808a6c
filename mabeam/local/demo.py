"""``mabeam demo``: the local control plane, the operator, the example agents and manifests.

It applies ``examples/*.yaml`` in dependency order (Agents, Variables and Accounts first,
sessions once their participants are Ready) and prints progress until every object has reached
its outcome. Sessions annotated ``mabeam.io/demo-wave: "<n>"`` start in waves, each once the one
before has ended (sessions paid from the same Accounts then settle in a known order, so the
demo's outcomes are the same on every run); the balances are printed before and after.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ..errors import MabeamError
from ..kube.client import Kube
from ..kube.resources import ACCOUNT, AGENT, AUCTION, COORDINATION, MARKET, VARIABLE, VOTE, Res
from .cluster import BOUNDED_HISTORY, LocalCluster

__all__ = ["load_manifests", "main", "metrics_summary", "play", "quiet_logs"]

_ORDER: tuple[Res, ...] = (AGENT, VARIABLE, ACCOUNT, COORDINATION, VOTE, AUCTION, MARKET)
_FIRST = ("Agent", "Variable", "Account")
WAVE_ANNOTATION = "mabeam.io/demo-wave"
_BY_KIND = {res.kind: res for res in _ORDER}
_SESSION_DONE = {
    COORDINATION: {"Decided", "NoDecision", "Failed", "Cancelled"},
    AUCTION: {"Awarded", "NoSale", "Failed", "Cancelled"},
    MARKET: {"Cleared", "NoTrade", "Failed", "Cancelled"},
}


def load_manifests(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in _BY_KIND:
                docs.append(doc)
    docs.sort(key=lambda d: _ORDER.index(_BY_KIND[d["kind"]]))
    return docs


def _done(res: Res, obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    if res is AGENT:
        return status.get("phase") == "Ready"
    if res is VARIABLE:
        return status.get("version") is not None or any(
            c.get("type") == "Valid" and c.get("status") == "False" for c in status.get("conditions") or []
        )
    if res in _SESSION_DONE:
        return status.get("phase") in _SESSION_DONE[res] and (
            status.get("payment") != "Ledger" or bool(status.get("outcomeApplied"))
        )
    if res is ACCOUNT:
        return any(c.get("type") == "Ready" for c in status.get("conditions") or [])
    return True


def _line(res: Res, obj: dict[str, Any]) -> str:
    meta, status = obj["metadata"], obj.get("status") or {}
    name = f"{res.kind.lower()}/{meta['name']}"
    if res is AGENT:
        extra = f"pod={status.get('podName') or '-'} restarts={status.get('restarts', 0)}"
        return f"  {name:<32} {status.get('phase') or 'Pending':<10} {extra}"
    if res is VARIABLE:
        value = json.dumps(status.get("value")) if "value" in status else "-"
        changed = status.get("changedBy") or {}
        who = f"{changed.get('kind', '')}/{changed.get('name', '')}" if changed else "-"
        owner = status.get("owner") or {}
        owned = f" owner={owner.get('name')}" if owner else ""
        return f"  {name:<32} v{status.get('version', '-')!s:<9} value={value} by={who}{owned}"
    if res is ACCOUNT:
        goods = ",".join(
            f"{g.get('good')}={g.get('held', 0)}" for g in status.get("goods") or [] if isinstance(g, dict)
        )
        return (
            f"  {name:<32} balance={status.get('balance', '-')} escrow={status.get('escrow', '-')} "
            f"entries={len(status.get('entries') or [])}" + (f" goods={goods}" if goods else "")
        )
    if res is COORDINATION:
        result = status.get("result") or {}
        outcome = f"result={json.dumps(result.get('value'))} ({result.get('reason', '')})" if result else ""
        return f"  {name:<32} {status.get('phase') or 'Pending':<10} {outcome}"
    if res is AUCTION:
        result = status.get("result") or {}
        if result:
            sold = ", ".join(
                f"{'+'.join(a.get('items', []))} to {a.get('agent')} at {a.get('price'):g}"
                for a in result.get("allocations") or []
            )
            outcome = f"{sold or '-'} ({result.get('reason', '')})"
        else:
            clock = status.get("clockPrice")
            outcome = f"round {status.get('round')} at {clock:g}" if clock is not None else ""
        return f"  {name:<32} {status.get('phase') or 'Pending':<10} {outcome}"
    if res is MARKET:
        result = status.get("result") or {}
        outcome = ""
        if result:
            price = result.get("price")
            outcome = f"price={price:g} volume={result.get('volume', 0):g}" if price is not None else ""
            if result.get("goods"):  # fisher: a price per good
                outcome = " ".join(f"{g.get('good')}={_number(g.get('price'))}" for g in result["goods"])
            outcome += f" ({result.get('reason', '')})"
        if status.get("phase") == "Failed":
            outcome += f": {result.get('message', '')}"
        return f"  {name:<32} {status.get('phase') or 'Pending':<10} {outcome}"
    return f"  {name}"


def _number(value: Any) -> str:
    """An amount as the operator wrote it: a JSON number, or a decimal string when it is long."""
    return f"{value:g}" if isinstance(value, int | float) else str(value)


async def _apply(kube: Kube, docs: Iterable[dict[str, Any]]) -> list[tuple[Res, str, str]]:
    applied = []
    for doc in docs:
        res = _BY_KIND[doc["kind"]]
        meta = doc["metadata"]
        namespace = meta.setdefault("namespace", "default")
        await kube.create(res, doc)
        applied.append((res, namespace, meta["name"]))
    return applied


async def _wait(kube: Kube, objects: list[tuple[Res, str, str]], deadline: float, title: str) -> bool:
    print(title)
    last = ""
    while True:
        current = [await kube.get(res, name, ns) for res, ns, name in objects]
        lines = "\n".join(_line(res, obj) for (res, _, _), obj in zip(objects, current, strict=True) if obj)
        if lines != last:
            print(f"[{time.strftime('%H:%M:%S')}]\n{lines}", flush=True)
            last = lines
        if all(obj and _done(res, obj) for (res, _, _), obj in zip(objects, current, strict=True)):
            return True
        if time.monotonic() > deadline:
            print("Timed out; the last state is above.")
            return False
        await asyncio.sleep(0.25)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def metrics_summary(url: str) -> str:
    """Scrape the operator's endpoint, as Prometheus would, and show the headline series."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
        text = await response.text()
    wanted = (
        "mabeam_agents{",
        "mabeam_sessions_total{",
        "mabeam_variable_writes_total{",
        "mabeam_payments_total{",
    )
    lines = [line for line in text.splitlines() if line.startswith(wanted) and not line.endswith(" 0.0")]
    return "Metrics scraped from " + url + ":\n" + "\n".join(f"  {line}" for line in lines)


def _wave(doc: dict[str, Any]) -> int:
    return int(((doc.get("metadata") or {}).get("annotations") or {}).get(WAVE_ANNOTATION, 0))


async def _accounts(kube: Kube, namespaces: Iterable[str]) -> list[tuple[Res, str, str]]:
    return [
        (ACCOUNT, ns, obj["metadata"]["name"])
        for ns in sorted(set(namespaces))
        for obj in await kube.list(ACCOUNT, ns)
    ]


async def play(kube: Kube, docs: list[dict[str, Any]], deadline: float) -> bool:
    """Apply the manifests in dependency order and wait for every outcome; True if all came."""
    first = [d for d in docs if d["kind"] in _FIRST]
    later = [d for d in docs if d["kind"] not in _FIRST]
    applied = await _apply(kube, first)
    ok = await _wait(kube, applied, deadline, "Agents, Variables and Accounts:")
    namespaces = [ns for res, ns, _ in applied if res is ACCOUNT]
    for wave in sorted({_wave(d) for d in later}):
        if not ok:
            break
        sessions = await _apply(kube, [d for d in later if _wave(d) == wave])
        ok = await _wait(kube, sessions, deadline, "Sessions:" if wave == 0 else f"Sessions (wave {wave}):")
    variables = [a for a in applied if a[0] is VARIABLE]
    if ok and later and variables:
        ok = await _wait(kube, variables, deadline, "Variables after the sessions:")
    if ok and later and namespaces:
        ok = await _wait(kube, await _accounts(kube, namespaces), deadline, "Accounts after the sessions:")
    return ok


def quiet_logs() -> None:
    """Keep the outcome readable (unless debug logging was asked for)."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        for noisy in ("kopf", "aiohttp", "httpx", "httpx2", "mabeam", "asyncio"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


async def main(examples: Path, *, timeout: float = 180.0, workdir: Path = Path(".mabeam-local")) -> int:
    quiet_logs()
    docs = load_manifests(examples)
    if not docs:
        print(f"No MABEAM manifests in {examples}/")
        return 1
    ok = False
    started = time.monotonic()
    deadline = started + timeout
    kubelet = {"probe_period": 1.0, "backoff_base": 1.0}
    async with LocalCluster(workdir, kubelet_options=kubelet, api_options=BOUNDED_HISTORY) as cluster:
        print(f"Local API at {cluster.url}; pod logs in {cluster.workdir / 'pods'}")
        # The operator runs as its own process, as in a cluster: `mabeam run`, serving metrics.
        metrics_port = _free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        await cluster.start_operator_process("-m", "mabeam.cli", "run", "--metrics-port", str(metrics_port))
        print(f"Operator metrics at {metrics_url}; its log in {cluster.workdir / 'operator.log'}")
        kube = cluster.client()
        try:
            ok = await play(kube, docs, deadline)
        except MabeamError as exc:
            print(f"Demo failed: {exc}")
            ok = False
        finally:
            await kube.close()
            if ok:
                print(await metrics_summary(metrics_url))
            await cluster.stop_operator()
        print(f"{'Done' if ok else 'Failed'} in {time.monotonic() - started:.1f}s.")
        return 0 if ok else 1
