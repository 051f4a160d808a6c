"""The admission policies: "an agent speaks only in its own name", as ValidatingAdmissionPolicies.

This module is their one source. The Helm chart's ``templates/admission.yaml`` is generated from
it (:func:`chart_template`; ``python -m mabeam.kube.admission > charts/mabeam/templates/admission.yaml``,
and a test fails when they drift), and ``mabeam local`` applies the same objects
(:func:`policy_objects`) to its API server, which evaluates them as a cluster does.

Identity comes from authentication: an agent's pod runs as the ServiceAccount
``mabeam-agent-<agent>`` of the agent's namespace, so a request's ``userInfo.username`` says which
agent sends it, and the policies refuse a request whose fields name another:

* ``agent-identity`` (Votes, Bids, Orders): a ServiceAccount other than the operator's writes an
  answer only in its own name (``spec.agent``); nobody moves an answer to another agent or
  session; an answer is named ``<session>-<agent>``, so nobody can take another agent's name
  first (the operator counts only answers of that name); an answer carries the label
  ``mabeam.io/session``, by which its session finds it, naming that session.
* ``variable-writer`` (Variables): a ServiceAccount's write (annotation ``mabeam.io/write``) names
  its writer in ``mabeam.io/writer``, and that is itself; it changes only ``spec.value``, and only
  as such a write, so that access rules, constraints, locks and fencing always apply. People
  (not ServiceAccounts) and the operator are not restricted by these rules: RBAC decides whether
  they may write at all.
* ``reserved-names`` (Agents, Accounts): nobody creates an Agent named ``mabeam-house``, nor an
  Account of that name but the operator: it is the namespace's house, which is paid.
* ``account-escrow`` (Accounts, on DELETE): an Account whose status holds escrow (money or goods)
  for an open session is not deleted, so that nothing held is lost; delete it once they end.

The expressions are standard CEL (no Kubernetes extension functions), so that they can be
evaluated by cel-python in the local API server and in the unit tests.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from ..models.account import HOUSE_ACCOUNT

__all__ = [
    "ACCOUNT_ESCROW",
    "OPERATOR",
    "POLICIES",
    "RESERVED_NAMES",
    "Policy",
    "Validation",
    "chart_template",
    "policy_objects",
]

#: Stands for the operator's user name (a quoted CEL string) in the expressions.
OPERATOR = "@operator@"

_NOT_AGENT = (
    "!request.userInfo.username.startsWith('system:serviceaccount:')"
    f" || request.userInfo.username == {OPERATOR}"
)
_SESSION = (
    "(request.resource.resource == 'votes' ? object.spec.session"
    " : request.resource.resource == 'bids' ? object.spec.auction : object.spec.market)"
)
_AGENT_SA = "'system:serviceaccount:' + object.metadata.namespace + ':mabeam-agent-'"
_HAS_WRITE = "has(object.metadata.annotations) && 'mabeam.io/write' in object.metadata.annotations"
_HAS_WRITER = "has(object.metadata.annotations) && 'mabeam.io/writer' in object.metadata.annotations"


def _unchanged(field: str) -> str:
    return (
        f"(has(object.spec.{field}) == has(oldObject.spec.{field}))"
        f" && (!has(object.spec.{field}) || object.spec.{field} == oldObject.spec.{field})"
    )


@dataclasses.dataclass(frozen=True)
class Validation:
    expression: str
    message: str
    reason: str = "Forbidden"
    message_expression: str | None = None

    def as_dict(self, operator: str) -> dict[str, Any]:
        out = {"expression": self.expression.replace(OPERATOR, operator)}
        if self.message_expression:
            out["messageExpression"] = self.message_expression
        out.update(message=self.message, reason=self.reason)
        return out


@dataclasses.dataclass(frozen=True)
class Policy:
    suffix: str
    comment: str
    resources: tuple[str, ...]
    operations: tuple[str, ...]
    validations: tuple[Validation, ...]

    def spec(self, operator: str) -> dict[str, Any]:
        return {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["mabeam.io"],
                        "apiVersions": ["*"],
                        "operations": list(self.operations),
                        "resources": list(self.resources),
                    }
                ]
            },
            "validations": [v.as_dict(operator) for v in self.validations],
        }


AGENT_IDENTITY = Policy(
    suffix="agent-identity",
    comment=(
        "An agent may only speak in its own name. A Vote, Bid or Order names its author in\n"
        "spec.agent; an agent's pod runs as the ServiceAccount mabeam-agent-<agent> in the agent's\n"
        "namespace. A request from any other ServiceAccount naming that agent is refused, except from\n"
        "the operator. People (users, not ServiceAccounts) may write any; RBAC decides whether they\n"
        "may write at all. Nobody may move an existing object to another agent or session, and an\n"
        "answer is named <session>-<agent>, so nobody can take another agent's answer name first.\n"
        "An answer carries the label mabeam.io/session, by which its session finds it, naming that\n"
        "session (an answer without it would never be counted nor refused)."
    ),
    resources=("votes", "bids", "orders"),
    operations=("CREATE", "UPDATE"),
    validations=(
        Validation(
            expression=f"{_NOT_AGENT} || request.userInfo.username == {_AGENT_SA} + object.spec.agent",
            message_expression=(
                "request.userInfo.username + ' may not write a ' + request.kind.kind"
                " + ' in the name of agent ' + object.spec.agent"
                " + ': an agent writes only as itself, from the ServiceAccount mabeam-agent-'"
                " + object.spec.agent + ' in namespace ' + object.metadata.namespace"
            ),
            message="an agent may only write Votes, Bids and Orders in its own name (spec.agent)",
        ),
        Validation(
            expression=(
                "request.operation != 'UPDATE' || (object.spec.agent == oldObject.spec.agent"
                " && (request.resource.resource != 'votes' || object.spec.session == oldObject.spec.session)"
                " && (request.resource.resource != 'bids' || object.spec.auction == oldObject.spec.auction)"
                " && (request.resource.resource != 'orders' || object.spec.market == oldObject.spec.market))"
            ),
            message=(
                "spec.agent and the session (spec.session of a Vote, spec.auction of a Bid, spec.market of"
                " an Order) cannot change; create a new object instead"
            ),
            reason="Invalid",
        ),
        Validation(
            expression=f"object.metadata.name == {_SESSION} + '-' + object.spec.agent",
            message_expression=(
                "'a ' + request.kind.kind + ' of agent ' + object.spec.agent + ' must be named '"
                f" + {_SESSION} + '-' + object.spec.agent + ', not ' + object.metadata.name"
            ),
            message="an answer must be named <session>-<agent> (the session's name, a dash, spec.agent)",
            reason="Invalid",
        ),
        Validation(
            expression=(
                "has(object.metadata.labels) && 'mabeam.io/session' in object.metadata.labels"
                f" && object.metadata.labels['mabeam.io/session'] == {_SESSION}"
            ),
            message_expression=(
                "!has(object.metadata.labels) || !('mabeam.io/session' in object.metadata.labels)"
                " ? 'metadata.labels: a ' + request.kind.kind + ' must carry the label mabeam.io/session: '"
                f" + {_SESSION} + ' (its session finds its answers by it)'"
                " : 'metadata.labels: the label mabeam.io/session of a ' + request.kind.kind"
                f" + ' must name its session ' + {_SESSION} + ', not '"
                " + object.metadata.labels['mabeam.io/session']"
            ),
            message=(
                "metadata.labels: an answer must carry the label mabeam.io/session naming its session"
                " (spec.session, spec.auction or spec.market): the session finds its answers by it"
            ),
            reason="Invalid",
        ),
    ),
)

VARIABLE_WRITER = Policy(
    suffix="variable-writer",
    comment=(
        "The same rule for Variables. An agent writes a Variable by updating it with the annotation\n"
        "mabeam.io/write (JSON, which CEL cannot read) and the plain annotation mabeam.io/writer, its\n"
        "own name. RBAC lets only the allowed agents update the Variable; this policy makes the name\n"
        "true: a ServiceAccount other than the operator's that sends an object carrying\n"
        "mabeam.io/write must be mabeam-agent-<mabeam.io/writer> of the Variable's namespace (the\n"
        "operator refuses a write whose JSON names another writer than mabeam.io/writer). And an\n"
        "agent's UPDATE may change nothing in spec but spec.value, and spec.value only together with\n"
        "mabeam.io/write: otherwise the operator would take the change for a User's write, which\n"
        "locks, fencing and the conflict policy do not bind. People and the operator are not\n"
        "restricted here."
    ),
    resources=("variables",),
    operations=("CREATE", "UPDATE"),
    validations=(
        Validation(
            expression=f"{_NOT_AGENT} || !({_HAS_WRITE}) || ({_HAS_WRITER})",
            message=(
                "a Variable write (annotation mabeam.io/write) from a ServiceAccount must name its writer"
                " in the annotation mabeam.io/writer"
            ),
            reason="Invalid",
        ),
        Validation(
            expression=(
                f"{_NOT_AGENT} || !({_HAS_WRITE}) || !({_HAS_WRITER})"
                f" || request.userInfo.username == {_AGENT_SA}"
                " + object.metadata.annotations['mabeam.io/writer']"
            ),
            message_expression=(
                "request.userInfo.username + ' may not write Variable ' + object.metadata.name + ' in the"
                " name of agent ' + object.metadata.annotations['mabeam.io/writer'] + ': an agent writes"
                " only as itself, from the ServiceAccount mabeam-agent-'"
                " + object.metadata.annotations['mabeam.io/writer']"
                " + ' in namespace ' + object.metadata.namespace"
            ),
            message="an agent may only write Variables in its own name (annotation mabeam.io/writer)",
        ),
        Validation(
            expression=(
                f"{_NOT_AGENT} || request.operation != 'UPDATE' || ("
                + " && ".join(
                    f"({_unchanged(f)})"
                    for f in (
                        "type",
                        "constraints",
                        "description",
                        "access",
                        "conflictPolicy",
                        "historyLimit",
                    )
                )
                + ")"
            ),
            message=(
                "an agent may only change spec.value of a Variable (with the annotation mabeam.io/write);"
                " spec.type, constraints, description, access, conflictPolicy and historyLimit are changed"
                " by people"
            ),
        ),
        Validation(
            expression=(
                f"{_NOT_AGENT} || request.operation != 'UPDATE' || ({_unchanged('value')}) || ({_HAS_WRITE})"
            ),
            message=(
                "an agent changes spec.value of a Variable only as a write: with the annotations"
                " mabeam.io/write and mabeam.io/writer (the SDK's ctx.variables.write sets them)"
            ),
        ),
    ),
)

_HOUSE = HOUSE_ACCOUNT

RESERVED_NAMES = Policy(
    suffix="reserved-names",
    comment=(
        "The house of a namespace is paid for items nobody owned and keeps a double auction's\n"
        f"surplus: its Account is {_HOUSE}, which the operator creates. Nobody else may create an\n"
        f"Account of that name (it would receive the house's money), and no Agent may be named\n"
        f"{_HOUSE} (it would read and be paid as the house)."
    ),
    resources=("agents", "accounts"),
    operations=("CREATE",),
    validations=(
        Validation(
            expression=(
                f"object.metadata.name != '{_HOUSE}' || (request.resource.resource == 'accounts'"
                f" && request.userInfo.username == {OPERATOR})"
            ),
            message_expression=(
                f"'the name {_HOUSE} is reserved for the house Account of the namespace, which the"
                " operator creates: name this ' + request.kind.kind + ' otherwise'"
            ),
            message=f"the name {_HOUSE} is reserved for the house Account, which the operator creates",
            reason="Invalid",
        ),
    ),
)

_NO_HOLDS = (
    "!has(oldObject.status)"
    " || ((!has(oldObject.status.holds) || size(oldObject.status.holds) == 0)"
    " && (!has(oldObject.status.goods)"
    " || oldObject.status.goods.all(g, !has(g.holds) || size(g.holds) == 0)))"
)

ACCOUNT_ESCROW = Policy(
    suffix="account-escrow",
    comment=(
        "An Account that holds escrow (money or goods) for an open session cannot be deleted:\n"
        "the session would settle on an Account that is gone, and what it held would be lost. The\n"
        "delete is refused until every session has ended and released its hold (a session deleted\n"
        "while open releases it within a minute); then delete it again. Applies to everyone."
    ),
    resources=("accounts",),
    operations=("DELETE",),
    validations=(
        Validation(
            expression=_NO_HOLDS,
            message_expression=(
                "'Account ' + oldObject.metadata.name + ' holds escrow for open sessions"
                " (status.holds, status.goods[].holds): it cannot be deleted until they end and"
                " release it; delete it again then'"
            ),
            message="an Account that holds escrow for open sessions cannot be deleted until they release it",
        ),
    ),
)

POLICIES: tuple[Policy, ...] = (AGENT_IDENTITY, VARIABLE_WRITER, RESERVED_NAMES, ACCOUNT_ESCROW)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def policy_objects(
    operator_username: str,
    *,
    name_prefix: str = "mabeam",
    labels: dict[str, str] | None = None,
    validation_actions: tuple[str, ...] = ("Deny",),
) -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicies and their bindings (the operator runs as ``operator_username``)."""
    out: list[dict[str, Any]] = []
    for policy in POLICIES:
        name = f"{name_prefix}-{policy.suffix}"
        meta: dict[str, Any] = {"name": name, **({"labels": dict(labels)} if labels else {})}
        out.append(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": meta,
                "spec": policy.spec(_quote(operator_username)),
            }
        )
        out.append(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": dict(meta),
                "spec": {"policyName": name, "validationActions": list(validation_actions)},
            }
        )
    return out


def _block(key: str, text: str, indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}{key}: >-", *(f"{pad}  {line}" for line in _wrap(text, 96 - indent))]


def _wrap(text: str, width: int) -> list[str]:
    """Fold a long expression on spaces (a folded scalar joins the lines again with spaces)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return lines


def _flow(items: tuple[str, ...]) -> str:
    return ", ".join(f'"{item}"' for item in items)


def chart_template() -> str:
    """The chart's ``templates/admission.yaml`` (Helm template text)."""
    out = [
        "{{- /* Generated from mabeam/kube/admission.py: python -m mabeam.kube.admission */}}",
        "{{- if .Values.admission.enabled }}",
        '{{- $operator := include "mabeam.operatorUsername" . }}',
    ]
    for i, policy in enumerate(POLICIES):
        if i:
            out.append("---")
        out += [f"# {line}".rstrip() for line in policy.comment.splitlines()]
        out += [
            "apiVersion: admissionregistration.k8s.io/v1",
            "kind: ValidatingAdmissionPolicy",
            "metadata:",
            f'  name: {{{{ include "mabeam.fullname" . }}}}-{policy.suffix}',
            "  labels:",
            '    {{- include "mabeam.labels" . | nindent 4 }}',
            "spec:",
            "  failurePolicy: Fail",
            "  matchConstraints:",
            "    resourceRules:",
            '      - apiGroups: ["mabeam.io"]',
            '        apiVersions: ["*"]',
            f"        operations: [{_flow(policy.operations)}]",
            f"        resources: [{_flow(policy.resources)}]",
            "  validations:",
        ]
        for v in policy.validations:
            fields = v.as_dict("{{ $operator | squote }}")
            expression = _block("expression", fields.pop("expression"), 6)
            expression[0] = "    - " + expression[0].lstrip()
            out += expression
            if "messageExpression" in fields:
                out += _block("messageExpression", fields.pop("messageExpression"), 6)
            out += _block("message", fields.pop("message"), 6)
            out.append(f"      reason: {fields.pop('reason')}")
        out += [
            "---",
            "apiVersion: admissionregistration.k8s.io/v1",
            "kind: ValidatingAdmissionPolicyBinding",
            "metadata:",
            f'  name: {{{{ include "mabeam.fullname" . }}}}-{policy.suffix}',
            "  labels:",
            '    {{- include "mabeam.labels" . | nindent 4 }}',
            "spec:",
            f'  policyName: {{{{ include "mabeam.fullname" . }}}}-{policy.suffix}',
            "  validationActions:",
            "    {{- toYaml .Values.admission.validationActions | nindent 4 }}",
        ]
    out.append("{{- end }}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(chart_template())
