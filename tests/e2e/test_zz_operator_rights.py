"""Runs last: over the whole e2e run, the operator (the chart's ServiceAccount, with exactly the
chart's RBAC) was never refused a request, and it authenticated as that ServiceAccount."""

from __future__ import annotations

import json

import pytest

from tests.e2e._helpers import E2E


def test_the_operator_needed_nothing_beyond_the_charts_rules(e2e: E2E) -> None:
    if e2e.plane is None:
        pytest.skip("needs the audit log of the control plane this suite starts")
    deployment = json.loads(e2e.kubectl("-n", "mabeam-system", "get", "deployment", "-o", "json").stdout)[
        "items"
    ][0]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    user = f"system:serviceaccount:mabeam-system:{account}"
    events = [e for e in e2e.audit_events() if (e.get("user") or {}).get("username") == user]
    assert len(events) > 100, "the operator made (almost) no requests: is it running as its ServiceAccount?"
    forbidden = [
        f"{e['verb']} {e.get('requestURI')}"
        for e in events
        if (e.get("responseStatus") or {}).get("code") == 403
        # NamespaceLifecycle refuses new objects in a namespace being deleted with a 403, to
        # everyone: an Event or a replacement written while a test's namespace goes away.
        and "because it is being terminated" not in (e.get("responseStatus") or {}).get("message", "")
    ]
    assert not forbidden, forbidden
