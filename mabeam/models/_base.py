"""Conventions every CRD model follows.

- ``MabeamModel``: camelCase aliases, unknown fields forbidden, descriptions on fields
  (they become the CRD's field descriptions).
- ``Condition``: the Kubernetes condition shape (type/status/reason/message/time).
- ``KindInfo``: what the CRD generator needs beyond the spec and status models.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "mabeam.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class MabeamModel(BaseModel):
    """Base of every spec and status model: camelCase on the wire, nothing unknown."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_enum_values=True,
    )

    def to_wire(self) -> dict[str, object]:
        """The JSON form used in manifests and the API (camelCase, no unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(MabeamModel):
    """One observation of the object's state, as Kubernetes conventions describe it."""

    type: str = Field(description="The aspect this condition is about, e.g. Ready or Invalid.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="A CamelCase word a program can match on.")
    message: str = Field(default="", description="A sentence for humans: what happened and why.")
    last_transition_time: str = Field(default="", description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed from."
    )


def rfc3339(now: _dt.datetime) -> str:
    """Format a timezone-aware time the way Kubernetes does (seconds, Z suffix)."""
    return now.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, object]],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: _dt.datetime,
    observed_generation: int | None = None,
) -> list[dict[str, object]]:
    """Return a new conditions list with ``type`` set; the transition time moves only on a change."""
    result: list[dict[str, object]] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type:
            result.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != status
        new = Condition(
            type=type,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=rfc3339(now) if changed else str(cond.get("lastTransitionTime", "")),
            observed_generation=observed_generation,
        )
        result.append(new.to_wire())
    if not found:
        result.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=rfc3339(now),
                observed_generation=observed_generation,
            ).to_wire()
        )
    return result


def ending_conditions(
    conditions: list[Condition], *, failed: bool, reason: str, message: str, now: _dt.datetime
) -> list[Condition]:
    """The conditions of a session that has just ended, as a Job's: ``Complete``, or ``Failed``
    (with ``Stalled``, which kstatus and Flux read as failed, and ``Invalid`` when the reason is
    an invalid spec); ``Reconciling`` goes."""
    wire = [c.to_wire() for c in conditions if c.type != "Reconciling"]
    ending = ("Failed", "Stalled") if failed else ("Complete",)
    if failed and reason == "Invalid":  # the spec cannot work: say so as the Agents do
        ending = (*ending, "Invalid")
    for type_ in ending:
        wire = set_condition(wire, type=type_, status="True", reason=reason, message=message, now=now)
    return [Condition.model_validate(c) for c in wire]


def running_conditions(conditions: list[Condition], *, phase: str, now: _dt.datetime) -> list[Condition]:
    """The conditions of a session still running: ``Reconciling`` (kstatus: in progress)."""
    if any(c.type in ("Complete", "Failed") and c.status == "True" for c in conditions):
        return conditions
    wire = set_condition(
        [c.to_wire() for c in conditions],
        type="Reconciling",
        status="True",
        reason=phase,
        message=f"The session is {phase}.",
        now=now,
    )
    return [Condition.model_validate(c) for c in wire]


def progress_conditions(
    conditions: list[dict[str, object]],
    *,
    reconciling: str | None,
    stalled: str | None,
    reason: str,
    now: _dt.datetime,
    observed_generation: int | None = None,
) -> list[dict[str, object]]:
    """kstatus's two conditions (what Flux and kpt read): ``Reconciling`` while the object moves
    toward its spec (``reconciling`` is the message), ``Stalled`` when it cannot get there
    without a change (``stalled``); each is present only while True."""
    result = [c for c in conditions if c.get("type") not in ("Reconciling", "Stalled")]
    for type_, message in (("Reconciling", reconciling), ("Stalled", stalled)):
        if message is None:
            continue
        old = [c for c in conditions if c.get("type") == type_]
        result = set_condition(
            [*result, *old], type=type_, status="True", reason=reason, message=message, now=now,
            observed_generation=observed_generation,
        )  # fmt: skip
    return result


def stamp_generation(conditions: list[Condition], generation: int | None) -> list[Condition]:
    """Every condition says which generation of the spec it was computed for."""
    if generation is None:
        return conditions
    update = {"observed_generation": generation}
    return [c if c.observed_generation == generation else c.model_copy(update=update) for c in conditions]


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class KindInfo:
    """Everything the CRD generator needs to know about one kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[MabeamModel]
    status: type[MabeamModel]
    description: str
    printer_columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)
    namespaced: bool = True
    # Extra CEL rules on spec: (rule, message) pairs, written in standard CEL.
    spec_validations: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # The longest name an object may have, if shorter than any name (253): an Agent's or a
    # session's name is a label value (its Pods', its answers'), at most 63 characters.
    name_max_length: int | None = None


def answer_kind(
    *,
    kind: str,
    session_kind: str,
    session_field: str,
    spec: type[MabeamModel],
    status: type[MabeamModel],
    columns: tuple[PrinterColumn, ...] = (),
    spec_validations: tuple[tuple[str, str], ...] = (),
) -> KindInfo:
    """An agent's answer in a session (Vote, Bid, Order): named ``<session>-<agent>``, shown
    with its session, its agent, what ``columns`` add, and the operator's verdict."""
    plural = kind.lower() + "s"
    return KindInfo(
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        short_names=(f"mb{kind.lower()}",),
        spec=spec,
        status=status,
        description=(
            f"An Agent's answer in {'an' if session_kind[0] in 'AEIOU' else 'a'} {session_kind} "
            f"(named <{session_field}>-<agent>)."
        ),
        printer_columns=(
            PrinterColumn(session_field.capitalize(), f".spec.{session_field}"),
            PrinterColumn("Agent", ".spec.agent"),
            *columns,
            PrinterColumn("Accepted", ".status.accepted", type="boolean"),
            PrinterColumn("Reason", ".status.reason", priority=1),
            PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
        ),
        spec_validations=spec_validations,
    )
