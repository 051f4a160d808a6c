"""Operator glue of the anomaly detector: feed ended sessions, report departures to the user.

The session controllers (Coordination, Auction, Market) call :func:`observe_session` once per
session, right after it has written the session's terminal status. When the session departs
from its protocol's baseline (see :mod:`mabeam.core.anomaly` for the rules), the session gets a
condition ``Anomalous=True`` (reason ``SlowDecision`` or ``FailureRateHigh``), a Warning Event
says what departed, by how much and from which baseline, and
``mabeam_anomalies_total{protocol, signal}`` counts it.

Baselines live in the operator's memory (``Runtime.baselines``): after a restart they are
rebuilt from the sessions that end from then on. A failure to report is logged and counted as
an API error; it never fails the reconcile that called it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core.anomaly import Anomaly, Baseline, observe
from ..errors import ApiError, ConflictError
from ..kube.client import AlreadyExistsError
from ..kube.resources import COORDINATION, EVENT, Res
from ..models._base import rfc3339, set_condition
from ._runtime import Runtime, clock

__all__ = ["CONDITION", "observe_session"]

log = logging.getLogger(__name__)

CONDITION = "Anomalous"
_WRITE_ATTEMPTS = 3


async def observe_session(
    runtime: Runtime,
    body: dict[str, Any],
    protocol: str,
    outcome: str,
    latency_seconds: float | None,
    res: Res = COORDINATION,
) -> dict[str, Any]:
    """Record one ended session (``outcome``: its final phase); report it if it is anomalous.

    ``body`` is the session as last written; the returned body is the current one (it changes
    when a condition was written), so that the caller's next precondition holds.
    """
    baseline = runtime.baselines.get(protocol, Baseline())
    runtime.baselines[protocol], anomalies = observe(baseline, outcome, latency_seconds, runtime.detector)
    for anomaly in anomalies:
        runtime.metrics.anomalies.labels(protocol=protocol, signal=anomaly.signal).inc()
        meta = body.get("metadata") or {}
        message = (
            f"{anomaly.describe(protocol)} Check the participants' health and the session's answers: "
            f"kubectl mabeam describe {res.kind.lower()} {meta.get('name')} -n {meta.get('namespace')}"
        )
        log.warning(
            "%s/%s: %s", meta.get("namespace"), meta.get("name"), message, extra={"session": meta.get("name")}
        )
        try:
            body = await _set_condition(runtime, res, body, anomaly, message)
            await _post_event(runtime, res, body, anomaly, message)
        except (ApiError, ConflictError) as exc:
            runtime.metrics.api_errors.labels(kind=res.kind).inc()
            log.warning("Could not report an anomaly of %s: %s", meta.get("name"), exc)
    return body


async def _set_condition(
    runtime: Runtime, res: Res, body: dict[str, Any], anomaly: Anomaly, message: str
) -> dict[str, Any]:
    """Set ``Anomalous=True`` with the resourceVersion read as a precondition; re-read on a race."""
    meta = body["metadata"]
    for attempt in range(_WRITE_ATTEMPTS):
        conditions = set_condition(
            list((body.get("status") or {}).get("conditions") or []),
            type=CONDITION,
            status="True",
            reason=anomaly.reason,
            message=message,
            now=clock(),
            observed_generation=meta.get("generation"),
        )
        try:
            return await runtime.kube.patch(
                res,
                meta["name"],
                {
                    "metadata": {"resourceVersion": meta["resourceVersion"]},
                    "status": {"conditions": conditions},
                },
                namespace=meta["namespace"],
                status=True,
            )
        except ConflictError:
            if attempt == _WRITE_ATTEMPTS - 1:
                raise
            current = await runtime.kube.get(res, meta["name"], meta["namespace"])
            if current is None:
                return body  # deleted meanwhile: nothing to mark
            body, meta = current, current["metadata"]
    return body  # pragma: no cover - the loop returns or raises


async def _post_event(
    runtime: Runtime, res: Res, body: dict[str, Any], anomaly: Anomaly, message: str
) -> None:
    meta = body["metadata"]
    now = rfc3339(clock())
    event = {
        "metadata": {
            # One Event per session and signal: a retry finds the one it made.
            "name": f"{meta['name']}.{anomaly.reason.lower()}",
            "namespace": meta["namespace"],
            "labels": {"app.kubernetes.io/managed-by": "mabeam"},
        },
        "involvedObject": {
            "apiVersion": res.api_version,
            "kind": res.kind,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": "Warning",
        "reason": anomaly.reason,
        "message": message,
        "source": {"component": "mabeam-operator"},
        "reportingComponent": "mabeam-operator",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await runtime.kube.create(EVENT, event)
    except AlreadyExistsError:
        pass  # reported by an earlier attempt
