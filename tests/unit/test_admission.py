"""The chart's admission policies: an agent may only speak in its own name.

The CEL expressions are read from the rendered chart (not copied here) and evaluated offline
with cel-python on the requests the API server would send: an agent writing in its own name,
in another agent's name, from another namespace, a person, the operator, and updates that try
to move an object to another agent or session. The same for Variable writes, whose writer is
named by the annotations the SDK sets (mabeam.io/write and mabeam.io/writer).
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

from mabeam.core.variables_wire import WRITE_ANNOTATION, WRITER_ANNOTATION, write_annotations
from mabeam.kube import admission
from mabeam.models.auction import BidSpec
from mabeam.models.coordination import VoteSpec
from mabeam.models.market import OrderSpec
from mabeam.models.variable import VariableSpec, VariableWrite, Writer

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "mabeam"
RELEASE_NAMESPACE = "mabeam-system"
OPERATOR = f"system:serviceaccount:{RELEASE_NAMESPACE}:mabeam"


def render_policy(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm_python.Chart.load(CHART_DIR) as chart:
        out = chart.render(values=values or {}, name="mabeam", namespace=RELEASE_NAMESPACE)
    return [d for d in yaml.safe_load_all(out["mabeam/templates/admission.yaml"]) if d]


def named_policy(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (vap,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy" and d["metadata"]["name"] == name]
    return vap


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    return named_policy(render_policy(), "mabeam-agent-identity")


@pytest.fixture(scope="module")
def variable_policy() -> dict[str, Any]:
    return named_policy(render_policy(), "mabeam-variable-writer")


#: Per answer kind: the field that names its session, and an answer's content.
ANSWERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Vote": ("session", {"choice": "yes"}),
    "Bid": ("auction", {"round": 1, "accept": True}),
    "Order": ("market", {"sealed": {"keyId": "sha256:" + "0" * 32, "ciphertext": "AAAA"}}),
}


def vote(
    agent: str = "alice", session: str = "s1", namespace: str = "team", kind: str = "Vote"
) -> dict[str, Any]:
    """A Vote (or a Bid or an Order, by ``kind``) of ``agent`` in ``session``."""
    field, content = ANSWERS[kind]
    return {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": f"{session}-{agent}",
            "namespace": namespace,
            "labels": {"mabeam.io/session": session, "mabeam.io/agent": agent},
        },
        "spec": {"agent": agent, field: session, **content},
    }


def test_the_test_answers_are_valid_answers() -> None:
    # The requests below carry objects the schema accepts, so admission is what decides them.
    assert VoteSpec.model_validate(vote("alice", "s1")["spec"]).agent == "alice"
    assert BidSpec.model_validate(vote("alice", "s1", kind="Bid")["spec"]).auction == "s1"
    assert OrderSpec.model_validate(vote("alice", "s1", kind="Order")["spec"]).market == "s1"


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


def test_errors_refuse(policy: dict[str, Any], variable_policy: dict[str, Any]) -> None:
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert variable_policy["spec"]["failurePolicy"] == "Fail"


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
    assert messages[0] == "an agent may only write Votes, Bids and Orders in its own name (spec.agent)"


@pytest.mark.parametrize("kind", ["Vote", "Bid", "Order"])
@pytest.mark.parametrize("username", [sa("team", "mabeam-agent-mallory"), "jane@example.com", OPERATOR])
def test_nobody_takes_another_agents_answer_name(policy: dict[str, Any], kind: str, username: str) -> None:
    # Mallory answers in her own name but under Alice's answer name, so that Alice could not answer.
    squat = vote("mallory", "s1", kind=kind)
    squat["metadata"]["name"] = "s1-alice"
    ok, messages, reasons = admitted(policy, request(username, squat))
    assert (ok, reasons) == (False, {INVALID})
    assert messages == [f"a {kind} of agent mallory must be named s1-mallory, not s1-alice"]
    own = vote("mallory", "s1", kind=kind)
    assert admitted(policy, request(sa("team", "mabeam-agent-mallory"), own))[0]


@pytest.mark.parametrize("kind", ["Vote", "Bid", "Order"])
@pytest.mark.parametrize("username", [sa("team", "mabeam-agent-alice"), "jane@example.com"])
def test_an_answer_carries_the_label_naming_its_session(
    policy: dict[str, Any], kind: str, username: str
) -> None:
    # Its session finds it by the label: without it (or naming another session) it would never
    # be counted nor refused, so the API server refuses it, whoever writes it.
    bare = vote("alice", "s1", kind=kind)
    del bare["metadata"]["labels"]
    ok, messages, reasons = admitted(policy, request(username, bare))
    assert (ok, reasons) == (False, {INVALID})
    assert messages == [
        f"metadata.labels: a {kind} must carry the label mabeam.io/session: s1"
        " (its session finds its answers by it)"
    ]
    other = vote("alice", "s1", kind=kind)
    other["metadata"]["labels"]["mabeam.io/session"] = "s2"
    ok, messages, _ = admitted(policy, request(username, other))
    assert messages == [
        f"metadata.labels: the label mabeam.io/session of a {kind} must name its session s1, not s2"
    ]
    removed = vote("alice", "s1", kind=kind)
    del removed["metadata"]["labels"]["mabeam.io/session"]
    assert not admitted(policy, request(username, removed, old=vote("alice", "s1", kind=kind)))[0]


def test_the_chart_template_is_generated_from_the_policies() -> None:
    template = (CHART_DIR / "templates" / "admission.yaml").read_text()
    assert template == admission.chart_template(), "regenerate: python -m mabeam.kube.admission > " + str(
        CHART_DIR / "templates" / "admission.yaml"
    )


def test_the_chart_renders_what_mabeam_local_applies() -> None:
    rendered = {(d["kind"], d["metadata"]["name"]): d["spec"] for d in render_policy()}
    local = {(d["kind"], d["metadata"]["name"]): d["spec"] for d in admission.policy_objects(OPERATOR)}
    assert rendered == local


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
        assert any("cannot change; create a new object instead" in m for m in messages)


@pytest.mark.parametrize("kind", ["Vote", "Bid", "Order"])
@pytest.mark.parametrize("username", [sa("team", "mabeam-agent-alice"), "jane@example.com"])
def test_no_answer_moves_to_another_session(policy: dict[str, Any], kind: str, username: str) -> None:
    old = vote("alice", "s1", kind=kind)
    field = ANSWERS[kind][0]
    same = copy.deepcopy(old)
    assert admitted(policy, request(username, same, old))[0]
    moved = copy.deepcopy(old)
    moved["spec"][field] = "s2"
    ok, messages, reasons = admitted(policy, request(username, moved, old))
    assert (ok, reasons) == (False, {INVALID}), messages


def test_operator_username_follows_release_and_service_account() -> None:
    values = {"serviceAccount": {"name": "mabeam-operator"}}
    docs = render_policy(values)
    vap = named_policy(docs, "mabeam-agent-identity")
    renamed = sa(RELEASE_NAMESPACE, "mabeam-operator")
    assert admitted(vap, request(renamed, vote("alice")))[0]
    assert not admitted(vap, request(OPERATOR, vote("alice")))[0]  # the default name is not special
    variables = named_policy(docs, "mabeam-variable-writer")
    pending = variable_write("bob")
    assert admitted(variables, request(renamed, pending, variable_write(None)))[0]
    assert not admitted(variables, request(OPERATOR, pending, variable_write(None)))[0]


def test_policy_matches_writes_of_votes_bids_orders(policy: dict[str, Any]) -> None:
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == ["mabeam.io"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    assert set(rule["resources"]) == {"votes", "bids", "orders"}


def test_each_policy_has_a_binding_that_enforces_it() -> None:
    docs = render_policy()
    names = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "ValidatingAdmissionPolicy")
    bindings = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert names == [
        "mabeam-account-escrow",
        "mabeam-agent-identity",
        "mabeam-reserved-names",
        "mabeam-variable-writer",
    ]
    assert sorted(b["spec"]["policyName"] for b in bindings) == names
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in bindings)


def test_bindings_follow_validation_actions() -> None:
    docs = render_policy({"admission": {"validationActions": ["Warn", "Audit"]}})
    bindings = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert len(bindings) == 4
    assert all(b["spec"]["validationActions"] == ["Warn", "Audit"] for b in bindings)


def test_admission_can_be_turned_off() -> None:
    assert render_policy({"admission": {"enabled": False}}) == []


# --- Variables: a write names its writer in the annotation mabeam.io/writer ----------------------


def variable_write(
    writer: str | None, *, claimed: str | None = "same", namespace: str = "team"
) -> dict[str, Any]:
    """A Variable as an agent PUTs it: the annotations the SDK sets for a write by ``writer``
    (none if ``writer`` is None), with mabeam.io/writer replaced by ``claimed`` (removed if None)."""
    annotations = {"owner": "platform-team"}
    if writer is not None:
        write = VariableWrite(value=22, writer=Writer(kind="Agent", name=writer))
        annotations.update(write_annotations("write-1", write))
        if claimed is None:
            del annotations[WRITER_ANNOTATION]
        elif claimed != "same":
            annotations[WRITER_ANNOTATION] = claimed
    return {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": "Variable",
        "metadata": {"name": "target", "namespace": namespace, "annotations": annotations},
        "spec": {"type": "number", "value": 22},
    }


def test_the_sdk_names_the_writer_in_both_annotations() -> None:
    annotations = variable_write("alice")["metadata"]["annotations"]
    assert annotations[WRITER_ANNOTATION] == "alice"
    assert '"name":"alice"' in annotations[WRITE_ANNOTATION]


ALICE = sa("team", "mabeam-agent-alice")

VARIABLE_CASES = [
    pytest.param(ALICE, variable_write("alice"), set(), id="agent-own-name"),
    pytest.param(ALICE, variable_write("bob"), {FORBIDDEN}, id="agent-other-agents-name"),
    pytest.param(
        ALICE, variable_write("alice", claimed="bob"), {FORBIDDEN}, id="writer-annotation-other-name"
    ),
    pytest.param(ALICE, variable_write("alice", claimed=None), {INVALID}, id="writer-annotation-missing"),
    pytest.param(
        sa("other", "mabeam-agent-alice"), variable_write("alice"), {FORBIDDEN}, id="other-namespace"
    ),
    pytest.param(sa("team", "default"), variable_write("alice"), {FORBIDDEN}, id="other-serviceaccount"),
    pytest.param(
        sa("team", "mabeam-agent-alice-x"), variable_write("alice"), {FORBIDDEN}, id="longer-sa-name"
    ),
    pytest.param(ALICE, variable_write(None), set(), id="agent-update-without-a-write"),
    pytest.param("jane@example.com", variable_write("bob"), set(), id="person-any-name"),
    pytest.param("jane@example.com", variable_write("bob", claimed=None), set(), id="person-no-writer"),
    pytest.param(OPERATOR, variable_write("bob"), set(), id="operator"),
    pytest.param(OPERATOR, variable_write("bob", claimed=None), set(), id="operator-no-writer"),
    pytest.param(
        sa("other-ns", "mabeam"), variable_write("bob"), {FORBIDDEN}, id="operator-name-other-namespace"
    ),
]


@pytest.mark.parametrize(("username", "obj", "refused_for"), VARIABLE_CASES)
def test_variable_write(
    variable_policy: dict[str, Any], username: str, obj: dict[str, Any], refused_for: set[str]
) -> None:
    ok, messages, reasons = admitted(variable_policy, request(username, obj, variable_write(None)))
    assert (ok, reasons) == (not refused_for, refused_for), messages


def test_variable_without_annotations_is_admitted(variable_policy: dict[str, Any]) -> None:
    bare = variable_write(None)
    del bare["metadata"]["annotations"]
    assert admitted(variable_policy, request(ALICE, bare))[0]
    assert admitted(variable_policy, request(ALICE, bare, bare))[0]


def test_variable_refusal_says_who_and_why(variable_policy: dict[str, Any]) -> None:
    ok, messages, _ = admitted(variable_policy, request(ALICE, variable_write("bob"), variable_write(None)))
    assert not ok
    (message,) = messages
    assert message.startswith(f"{ALICE} may not write Variable target in the name of agent bob")
    assert "mabeam-agent-bob in namespace team" in message
    ok, messages, _ = admitted(
        variable_policy, request(ALICE, variable_write("alice", claimed=None), variable_write(None))
    )
    assert messages == [
        "a Variable write (annotation mabeam.io/write) from a ServiceAccount must name its writer in "
        "the annotation mabeam.io/writer"
    ]


def test_variable_policy_matches_writes_of_variables(variable_policy: dict[str, Any]) -> None:
    (rule,) = variable_policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == ["mabeam.io"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    assert rule["resources"] == ["variables"]


# --- Variables: an agent changes spec.value only, and only as a write ----------------------------


def old_variable() -> dict[str, Any]:
    """A Variable as stored: every spec field set (the operator's and the user's view)."""
    obj = variable_write(None)
    obj["spec"].update(
        {
            "constraints": {"minimum": 0, "maximum": 40},
            "description": "the target temperature",
            "access": {"agents": ["alice"]},
            "conflictPolicy": "Reject",
            "historyLimit": 10,
        }
    )
    return obj


def changed(
    spec_change: dict[str, Any], *, drop: tuple[str, ...] = (), writer: str | None = None
) -> dict[str, Any]:
    """old_variable() with ``spec_change`` applied, ``drop`` removed, and (if ``writer``) the
    write annotations of that writer (for value 22, the stored value)."""
    new = old_variable()
    new["spec"].update(spec_change)
    for key in drop:
        del new["spec"][key]
    if writer is not None:
        new["metadata"]["annotations"].update(variable_write(writer)["metadata"]["annotations"])
    return new


def test_the_stored_variable_is_a_valid_spec() -> None:
    spec = VariableSpec.model_validate(old_variable()["spec"])
    assert spec.access.agents == ["alice"]


SPEC_CHANGES = [
    pytest.param({"access": {"selector": {}}}, (), id="access-opened-to-everyone"),
    pytest.param({"access": {"agents": ["alice", "bob"]}}, (), id="access-adds-agent"),
    pytest.param({}, ("access",), id="access-removed"),
    pytest.param({"type": "json"}, (), id="type"),
    pytest.param({"constraints": {"minimum": 0, "maximum": 1000}}, (), id="constraints"),
    pytest.param({}, ("constraints",), id="constraints-removed"),
    pytest.param({"conflictPolicy": "LastWriterWins"}, (), id="conflict-policy"),
    pytest.param({"historyLimit": 0}, (), id="history-limit"),
    pytest.param({"description": "mine now"}, (), id="description"),
]


@pytest.mark.parametrize(("spec_change", "drop"), SPEC_CHANGES)
def test_an_agent_cannot_change_other_spec_fields(
    variable_policy: dict[str, Any], spec_change: dict[str, Any], drop: tuple[str, ...]
) -> None:
    for new in (changed(spec_change, drop=drop), changed(spec_change, drop=drop, writer="alice")):
        ok, messages, reasons = admitted(variable_policy, request(ALICE, new, old_variable()))
        assert not ok
        assert reasons == {FORBIDDEN}
        assert any("an agent may only change spec.value" in m for m in messages), messages


@pytest.mark.parametrize(("spec_change", "drop"), SPEC_CHANGES)
@pytest.mark.parametrize("username", ["jane@example.com", OPERATOR])
def test_people_and_the_operator_may_change_the_spec(
    variable_policy: dict[str, Any], username: str, spec_change: dict[str, Any], drop: tuple[str, ...]
) -> None:
    new = changed({**spec_change, "value": 30}, drop=drop)
    ok, messages, _ = admitted(variable_policy, request(username, new, old_variable()))
    assert ok, messages


def test_an_agent_changes_the_value_only_with_the_write_annotations(variable_policy: dict[str, Any]) -> None:
    old = old_variable()
    old["spec"]["value"] = 20
    as_write = changed({"value": 22}, writer="alice")
    assert admitted(variable_policy, request(ALICE, as_write, old))[0]
    for bare in (changed({"value": 22}), changed({}, drop=("value",)), changed({"value": None})):
        ok, messages, reasons = admitted(variable_policy, request(ALICE, bare, old))
        assert (ok, reasons) == (False, {FORBIDDEN})
        assert messages == [
            "an agent changes spec.value of a Variable only as a write: with the annotations "
            "mabeam.io/write and mabeam.io/writer (the SDK's ctx.variables.write sets them)"
        ]
    # An unchanged value needs no annotation (e.g. an agent edits its own label on the object).
    same = changed({"value": 20})
    same["metadata"]["annotations"]["note"] = "x"
    assert admitted(variable_policy, request(ALICE, same, old))[0]


def test_the_spec_rule_names_every_spec_field_but_value(variable_policy: dict[str, Any]) -> None:
    # A new VariableSpec field must be added to the policy too, or agents could change it.
    text = " ".join(v["expression"] for v in variable_policy["spec"]["validations"])
    for name, field in VariableSpec.model_fields.items():
        alias = field.alias or name
        if alias != "value":
            assert f"object.spec.{alias} == oldObject.spec.{alias}" in text, alias
            assert f"has(object.spec.{alias}) == has(oldObject.spec.{alias})" in text, alias


# --- the house's name and the escrow of Accounts ------------------------------------------------


def named(kind: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "mabeam.io/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": "team"},
            **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("username", "kind", "name", "expected"),
    [
        pytest.param("jane@example.com", "Agent", "mabeam-house", False, id="person-agent-house"),
        pytest.param(OPERATOR, "Agent", "mabeam-house", False, id="operator-agent-house"),
        pytest.param("jane@example.com", "Account", "mabeam-house", False, id="person-account-house"),
        pytest.param(
            sa("team", "mabeam-agent-x"), "Account", "mabeam-house", False, id="agent-account-house"
        ),
        pytest.param(OPERATOR, "Account", "mabeam-house", True, id="operator-account-house"),
        pytest.param("jane@example.com", "Agent", "mabeam-house-2", True, id="other-name"),
        pytest.param("jane@example.com", "Account", "alice", True, id="person-account"),
    ],
)
def test_the_house_name_is_reserved(username: str, kind: str, name: str, expected: bool) -> None:
    reserved = named_policy(render_policy(), "mabeam-reserved-names")
    assert reserved["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE"]
    ok, messages, reasons = admitted(reserved, request(username, named(kind, name)))
    assert ok is expected, messages
    if not ok:
        assert reasons == {INVALID}
        assert messages == [
            f"the name mabeam-house is reserved for the house Account of the namespace, which the operator "
            f"creates: name this {kind} otherwise"
        ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(None, True, id="no-status"),
        pytest.param({"balance": "5.00", "holds": []}, True, id="no-holds"),
        pytest.param({"holds": [{"session": "auction/a:1", "amount": "2.00"}]}, False, id="money-held"),
        pytest.param({"goods": [{"good": "cpu", "held": "2", "holds": []}]}, True, id="goods-free"),
        pytest.param(
            {
                "goods": [
                    {"good": "cpu", "holds": []},
                    {"good": "gpu", "holds": [{"session": "market/m:1", "quantity": "1"}]},
                ]
            },
            False,
            id="goods-held",
        ),
    ],
)
def test_an_account_holding_escrow_is_not_deleted(status: dict[str, Any] | None, expected: bool) -> None:
    escrow = named_policy(render_policy(), "mabeam-account-escrow")
    assert escrow["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["DELETE"]
    old = named("Account", "alice", **({"status": status} if status is not None else {}))
    variables = request(OPERATOR, old, old)
    variables["request"]["operation"] = "DELETE"
    variables["object"] = None
    ok, messages, _ = admitted(escrow, variables)
    assert ok is expected, messages
    if not ok:
        assert messages[0].startswith("Account alice holds escrow for open sessions")
