"""The Variable kind: typed shared state with versions, history, locks and access control.

``spec.value`` is the desired value (kubectl, GitOps or an outcome set it); ``status.value`` is
the value that was applied, with its ``version``. Agents write through the operator, which checks
the write against the type and constraints, the access rules, the lock and the conflict policy
(see ``mabeam.core.variables``).

Admission (CEL) can only check what the apiserver can type: ``spec.value`` accepts any JSON
(``x-kubernetes-preserve-unknown-fields`` without a type), and the apiserver leaves such fields
out of the CEL environment. So CEL checks that the constraints fit the type; the value itself is
checked by the operator, which reports ``Valid=False`` with the reason.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ._base import Condition, KindInfo, MabeamModel, PrinterColumn

VariableType = Literal["number", "integer", "string", "boolean", "enum", "json"]
ConflictPolicy = Literal["Reject", "LastWriterWins", "HighestPriority"]
ActorKind = Literal["User", "Agent", "Session"]
VariablePhase = Literal["Pending", "Ready", "Invalid"]

#: How many applied session ids ``status.appliedSessions`` keeps (oldest dropped).
APPLIED_SESSIONS_LIMIT = 256

_ANY_JSON: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


class LabelSelectorRequirement(MabeamModel):
    """One term of ``matchExpressions`` (metav1.LabelSelectorRequirement)."""

    key: str = Field(min_length=1, max_length=317, description="The label key the term is about.")
    operator: SelectorOperator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="The values for In and NotIn (at least one); empty for Exists and DoesNotExist.",
        json_schema_extra={"items": {"type": "string", "maxLength": 63}},
    )


class LabelSelector(MabeamModel):
    """A label selector as Kubernetes defines it; an empty selector matches everything."""

    match_labels: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="Labels that must all be present with these values.",
        json_schema_extra={"additionalProperties": {"type": "string", "maxLength": 63}},
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=32, description="Requirements that must all hold."
    )


def selector_cel_rule(path: str) -> str:
    """A standard-CEL rule (rooted at ``self``) checking the operator/values pairing at ``path``.

    ``path`` is the dotted path of an optional selector below ``self``, e.g. ``access.selector``.
    Every component on the way is guarded with ``has()``.
    """
    parts = path.split(".")
    guards = ["!has(self." + ".".join(parts[: i + 1]) + ")" for i in range(len(parts))]
    sel = "self." + path
    guards.append(f"!has({sel}.matchExpressions)")
    body = (
        f"{sel}.matchExpressions.all(e, e.operator == 'In' || e.operator == 'NotIn' "
        "? has(e.values) && size(e.values) > 0 : !has(e.values) || size(e.values) == 0)"
    )
    return " || ".join([*guards, body])


class VariableConstraints(MabeamModel):
    """Constraints on the value; which ones apply depends on ``spec.type``."""

    minimum: float | None = Field(default=None, description="number/integer: the smallest allowed value.")
    maximum: float | None = Field(default=None, description="number/integer: the largest allowed value.")
    allowed_values: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="enum (required): the allowed values, as strings.",
        json_schema_extra={"items": {"type": "string", "maxLength": 256}},
    )
    pattern: str | None = Field(
        default=None,
        max_length=1024,
        description="string: a regular expression the value must contain a match of "
        "(anchor it with ^...$ to match the whole value).",
    )
    max_length: int | None = Field(
        default=None, ge=0, le=1_048_576, description="string: the most characters allowed."
    )


class VariableAccess(MabeamModel):
    """Which agents may write. Users (kubectl, GitOps) and sessions' outcomes always may."""

    agents: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Agents (by name, in the Variable's namespace) that may write.",
        json_schema_extra={"items": {"type": "string", "maxLength": 253}},
    )
    selector: LabelSelector | None = Field(
        default=None,
        description="Agents whose labels match may write. Absent: none; {} (empty): every agent.",
    )


class VariableSpec(MabeamModel):
    type: VariableType = Field(description="number, integer, string, boolean, enum or json.")
    constraints: VariableConstraints = Field(
        default_factory=VariableConstraints, description="Range, allowed values, pattern, length."
    )
    value: Any = Field(
        default=None,
        description="The desired value (any JSON that fits type and constraints; absent or null: "
        "none). Changing it applies it as a write by a User, without a version precondition.",
        json_schema_extra=_ANY_JSON,
    )
    description: str = Field(default="", max_length=4096, description="What the Variable means.")
    access: VariableAccess = Field(
        default_factory=VariableAccess,
        description="Which agents may write; empty means none (users and sessions still may).",
    )
    conflict_policy: ConflictPolicy = Field(
        default="Reject",
        description="What happens to a write based on an old version: Reject fails it, "
        "LastWriterWins applies it, HighestPriority applies it if the writer's priority is at "
        "least the last writer's.",
    )
    history_limit: int = Field(
        default=10, ge=0, le=1000, description="How many applied changes status.history keeps."
    )


class Actor(MabeamModel):
    """Who did something: a User (kubectl, GitOps), an Agent or a Session (an outcome)."""

    kind: ActorKind = Field(description="User, Agent or Session.")
    name: str = Field(min_length=1, max_length=253, description="The user, agent or session name.")


class Writer(Actor):
    priority: int = Field(
        default=0,
        ge=-1_000_000,
        le=1_000_000,
        description="The writer's priority (an Agent's spec.priority); ignored for Users.",
    )


class VariableWrite(MabeamModel):
    """A request to change status.value (what the SDK and the session outcomes send)."""

    value: Any = Field(description="The new value.", json_schema_extra=_ANY_JSON)
    based_on_version: int | None = Field(
        default=None, ge=0, description="The version the writer read; absent: no precondition."
    )
    writer: Writer = Field(description="Who writes.")
    fencing_token: int | None = Field(
        default=None, ge=1, description="The token of the lock the writer holds, if any."
    )
    session: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="The session whose outcome this is; it is applied at most once.",
    )
    reason: str = Field(default="", max_length=1024, description="Why the value changes.")


class HistoryEntry(MabeamModel):
    version: int = Field(ge=1, description="The version this change produced.")
    value: Any = Field(description="The value it set.", json_schema_extra=_ANY_JSON)
    changed_by: Actor = Field(description="Who changed it.")
    changed_at: str = Field(description="When (RFC 3339).")
    reason: str = Field(default="", description="Why.")
    session: str | None = Field(default=None, description="The session whose outcome it was.")


class VariableLock(MabeamModel):
    """The lock record. The token survives release so that tokens only ever grow."""

    holder: str | None = Field(default=None, description="Who holds the lock; absent when free.")
    fencing_token: int = Field(
        default=0, ge=0, description="The token of the latest acquisition (grows by one each time)."
    )
    expires_at: str | None = Field(
        default=None, description="When the holder's lease ends (RFC 3339, microseconds)."
    )


class WriteResult(MabeamModel):
    """What became of the last agent write (annotation ``mabeam.io/write``), by its id."""

    write_id: str = Field(min_length=1, max_length=128, description="The id the writer gave the write.")
    writer: Actor = Field(description="Who wrote.")
    applied: bool = Field(description="True if the value was applied.")
    reason: str = Field(
        description="Applied, InvalidValue, InvalidSpec, Conflict, Locked, Forbidden or Malformed."
    )
    message: str = Field(default="", description="Why, for humans.")
    version: int = Field(ge=0, description="The Variable's version after the write.")
    current_value: Any = Field(
        default=None, description="The applied value after the write.", json_schema_extra=_ANY_JSON
    )


class VariableStatus(MabeamModel):
    phase: VariablePhase | None = Field(
        default=None,
        description="Pending (valid, no value yet), Ready (the applied value fits the spec) or "
        "Invalid (see the Valid condition).",
    )
    value: Any = Field(default=None, description="The applied value.", json_schema_extra=_ANY_JSON)
    value_summary: str | None = Field(
        default=None, max_length=64, description="The applied value as short JSON text, for humans."
    )
    version: int = Field(
        default=0, ge=0, description="Grows by one per applied change; 0 means never written."
    )
    changed_by: Actor | None = Field(default=None, description="Who made the last applied change.")
    last_writer_priority: int | None = Field(
        default=None,
        description="The priority of the last writer (Agents and Sessions; absent after a User).",
    )
    reason: str = Field(default="", description="Why the last change was made.")
    changed_at: str | None = Field(default=None, description="When the last change was applied.")
    history: list[HistoryEntry] = Field(
        default_factory=list, description="The last spec.historyLimit applied changes, oldest first."
    )
    applied_sessions: list[str] = Field(
        default_factory=list,
        max_length=APPLIED_SESSIONS_LIMIT,
        description=f"The last {APPLIED_SESSIONS_LIMIT} sessions whose outcomes were applied, "
        "oldest first; a session in this list is never applied again.",
    )
    spec_value_hash: str | None = Field(
        default=None, description="SHA-256 of the spec.value that was last applied."
    )
    owner: Actor | None = Field(default=None, description="Who owns the resource (allocations).")
    lock: VariableLock | None = Field(default=None, description="The lock and its fencing token.")
    last_write: WriteResult | None = Field(
        default=None,
        description="The outcome of the last agent write; a write whose id is here is never applied again.",
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status reflects."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Valid, Locked.")


_HAS_C = "has(self.constraints)"

VARIABLE_SPEC_VALIDATIONS: tuple[tuple[str, str], ...] = (
    (
        f"self.type != 'enum' || ({_HAS_C} && has(self.constraints.allowedValues))",
        "spec.constraints.allowedValues is required when spec.type is enum",
    ),
    (
        f"!{_HAS_C} || !has(self.constraints.allowedValues) || self.type == 'enum'",
        "spec.constraints.allowedValues is only allowed when spec.type is enum",
    ),
    (
        f"!{_HAS_C} || (!has(self.constraints.minimum) && !has(self.constraints.maximum)) "
        "|| self.type == 'number' || self.type == 'integer'",
        "spec.constraints.minimum and maximum are only allowed when spec.type is number or integer",
    ),
    (
        f"!{_HAS_C} || !has(self.constraints.minimum) || !has(self.constraints.maximum) "
        "|| self.constraints.minimum <= self.constraints.maximum",
        "spec.constraints.minimum must not exceed spec.constraints.maximum",
    ),
    (
        f"!{_HAS_C} || (!has(self.constraints.pattern) && !has(self.constraints.maxLength)) "
        "|| self.type == 'string'",
        "spec.constraints.pattern and maxLength are only allowed when spec.type is string",
    ),
    (
        selector_cel_rule("access.selector"),
        "spec.access.selector.matchExpressions: In and NotIn need at least one value, "
        "Exists and DoesNotExist take none",
    ),
)


VARIABLE = KindInfo(
    kind="Variable",
    plural="variables",
    singular="variable",
    short_names=("var", "mbvar"),
    spec=VariableSpec,
    status=VariableStatus,
    description="Typed shared state with versions, history, locks and access control, "
    "projected into a per-namespace ConfigMap.",
    printer_columns=(
        PrinterColumn("Type", ".spec.type", description="The value's type."),
        PrinterColumn("Phase", ".status.phase", description="Pending, Ready or Invalid."),
        PrinterColumn("Value", ".status.valueSummary", description="The applied value (shortened)."),
        PrinterColumn("Version", ".status.version", type="integer", description="Applied changes."),
        PrinterColumn("Changed-By", ".status.changedBy.name", description="Who changed it last."),
        PrinterColumn("Locked-By", ".status.lock.holder", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    spec_validations=VARIABLE_SPEC_VALIDATIONS,
)
