"""The chart's admission policy: an agent may only speak in its own name.

The CEL expressions are read from the rendered chart (not copied here) and evaluated offline
with cel-python on the requests the API server would send: an agent writing in its own name,
in another agent's name, from another namespace, a person, the operator, and updates that try
to move an object to another agent or session.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import celpy
import celpy.adapter
import celpy.evaluation
import helm_python
import pytest
import yaml

from mabeam.models.coordination import VoteSpec

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "mabeam"
RELEASE_NAMESPACE = "mabeam-system"
OPERATOR = f"system:serviceaccount:{RELEASE_NAMESPACE}:mabeam"


def render_policy(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm_python.Chart.load(CHART_DIR) as chart:
        out = chart.render(values=values or {}, name="mabeam", namespace=RELEASE_NAMESPACE)
    return [d for d in yaml.safe_load_all(out["mabeam/templates/admission.yaml"]) if d]


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    (vap,) = [d for d in render_policy() if d["kind"] == "ValidatingAdmissionPolicy"]
    return vap


def vote(
    agent: str = "alice", session: str = "s1", namespace: str = "team", kind: str = "Vote"
) -> dict[str, Any]:
    return {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": f"{session}-{agent}", "namespace": namespace},
        "spec": {"agent": agent, "session": session, "choice": "yes"},
    }


def test_the_test_votes_are_valid_votes() -> None:
    # The requests below carry Votes the schema accepts, so admission is what decides them.
    assert VoteSpec.model_validate(vote("alice", "s1")["spec"]).agent == "alice"


def request(
    username: str,
    obj: dict[str, Any],
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The CEL variables of an admission request (``request``, ``object``, ``oldObject``)."""
    kind = obj["kind"]
    return {
        "request": {
            "operation": "UPDATE" if old is not None else "CREATE",
            "kind": {"group": "mabeam.io", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "mabeam.io", "version": "v1alpha1", "resource": kind.lower() + "s"},
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "userInfo": {"username": username, "groups": ["system:authenticated"]},
        },
        "object": obj,
        "oldObject": old,
    }


def evaluate(expression: str, variables: dict[str, Any]) -> Any:
    env = celpy.Environment()
    program = env.program(env.compile(expression))
    return program.evaluate({k: celpy.adapter.json_to_cel(v) for k, v in variables.items()})


def admitted(policy: dict[str, Any], variables: dict[str, Any]) -> tuple[bool, list[str], set[str]]:
    """Run every validation as the API server does: all must be true, and an evaluation error
    counts as a failure (the policy's failurePolicy is Fail, see below).

    Returns (admitted, messages of the failed validations, their reasons).
    """
    messages: list[str] = []
    reasons: set[str] = set()
    for validation in policy["spec"]["validations"]:
        try:
            ok = bool(evaluate(validation["expression"], variables))
        except celpy.evaluation.CELEvalError:
            ok = False
        if ok:
            continue
        text = validation.get("message", "")
        if "messageExpression" in validation:
            try:
                text = str(evaluate(validation["messageExpression"], variables))
            except celpy.evaluation.CELEvalError:
                pass  # the API server falls back to the static message, as here
        messages.append(text)
        reasons.add(validation["reason"])
    return not messages, messages, reasons


def test_errors_refuse(policy: dict[str, Any]) -> None:
    assert policy["spec"]["failurePolicy"] == "Fail"


def sa(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


CREATE_CASES = [
    pytest.param(sa("team", "mabeam-agent-alice"), vote("alice"), True, id="agent-own-name"),
    pytest.param(sa("team", "mabeam-agent-bob"), vote("alice"), False, id="agent-other-agents-name"),
    pytest.param(sa("other", "mabeam-agent-alice"), vote("alice"), False, id="same-name-other-namespace"),
    pytest.param(sa("team", "default"), vote("alice"), False, id="other-serviceaccount"),
    pytest.param(sa("team", "mabeam-agent-alice-x"), vote("alice"), False, id="longer-sa-name"),
    pytest.param(sa("team", "mabeam-agent-al"), vote("alice"), False, id="prefix-sa-name"),
    pytest.param("jane@example.com", vote("alice"), True, id="person"),
    pytest.param("system:admin", vote("alice"), True, id="cluster-admin-user"),
    pytest.param(OPERATOR, vote("alice"), True, id="operator"),
    pytest.param(sa("other-ns", "mabeam"), vote("alice"), False, id="operator-name-other-namespace"),
    pytest.param(sa("team", "mabeam-agent-alice"), vote("alice", kind="Bid"), True, id="bid-own-name"),
    pytest.param(sa("team", "mabeam-agent-bob"), vote("alice", kind="Order"), False, id="order-other-name"),
]


@pytest.mark.parametrize(("username", "obj", "expected"), CREATE_CASES)
def test_create(policy: dict[str, Any], username: str, obj: dict[str, Any], expected: bool) -> None:
    ok, messages, _ = admitted(policy, request(username, obj))
    assert ok is expected, messages


def test_refusal_says_who_and_why(policy: dict[str, Any]) -> None:
    bob = sa("team", "mabeam-agent-bob")
    ok, messages, reasons = admitted(policy, request(bob, vote("alice")))
    assert reasons == {"Forbidden"}
    assert not ok
    (message,) = messages
    assert bob in message
    assert "agent alice" in message
    assert "mabeam-agent-alice in namespace team" in message


def test_missing_agent_is_refused(policy: dict[str, Any]) -> None:
    obj = vote("alice")
    del obj["spec"]["agent"]
    ok, messages, _ = admitted(policy, request(sa("team", "mabeam-agent-alice"), obj))
    assert not ok
    assert messages == ["an agent may only write Votes, Bids and Orders in its own name (spec.agent)"]


FORBIDDEN, INVALID = "Forbidden", "Invalid"  # the reasons: wrong author, changed identity

UPDATE_CASES = [
    pytest.param(sa("team", "mabeam-agent-alice"), {}, set(), id="agent-changes-its-choice"),
    pytest.param(
        sa("team", "mabeam-agent-alice"), {"agent": "bob"}, {FORBIDDEN, INVALID}, id="agent-renames"
    ),
    pytest.param(sa("team", "mabeam-agent-bob"), {"agent": "bob"}, {INVALID}, id="other-agent-takes-over"),
    pytest.param(sa("team", "mabeam-agent-alice"), {"session": "s2"}, {INVALID}, id="agent-moves-session"),
    pytest.param("jane@example.com", {"agent": "bob"}, {INVALID}, id="person-changes-agent"),
    pytest.param("jane@example.com", {"session": "s2"}, {INVALID}, id="person-changes-session"),
    pytest.param(OPERATOR, {"agent": "bob"}, {INVALID}, id="operator-changes-agent"),
    pytest.param(OPERATOR, {}, set(), id="operator-update"),
    pytest.param(sa("team", "mabeam-agent-bob"), {}, {FORBIDDEN}, id="other-agent-edits"),
]


@pytest.mark.parametrize(("username", "change", "refused_for"), UPDATE_CASES)
def test_update(policy: dict[str, Any], username: str, change: dict[str, str], refused_for: set[str]) -> None:
    old = vote("alice", "s1")
    new = copy.deepcopy(old)
    new["spec"]["choice"] = "no"
    new["spec"].update(change)
    ok, messages, reasons = admitted(policy, request(username, new, old))
    assert (ok, reasons) == (not refused_for, refused_for), messages
    if INVALID in refused_for:
        assert "spec.agent and spec.session cannot change; create a new object instead" in messages


def test_operator_username_follows_release_and_service_account() -> None:
    values = {"serviceAccount": {"name": "mabeam-operator"}}
    (vap,) = [d for d in render_policy(values) if d["kind"] == "ValidatingAdmissionPolicy"]
    renamed = sa(RELEASE_NAMESPACE, "mabeam-operator")
    assert admitted(vap, request(renamed, vote("alice")))[0]
    assert not admitted(vap, request(OPERATOR, vote("alice")))[0]  # the default name is not special


def test_policy_matches_writes_of_votes_bids_orders(policy: dict[str, Any]) -> None:
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == ["mabeam.io"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    assert set(rule["resources"]) == {"votes", "bids", "orders"}


def test_binding_enforces_the_policy() -> None:
    docs = render_policy()
    (vap,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    (binding,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_admission_can_be_turned_off() -> None:
    assert render_policy({"admission": {"enabled": False}}) == []
