"""The Agent kind: one software agent, run as one Pod under its own ServiceAccount."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from ._base import Condition, KindInfo, MabeamModel, PrinterColumn

LABEL_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

Capability = Annotated[str, StringConstraints(pattern=LABEL_NAME_PATTERN, max_length=63)]

AgentPhase = Literal["Pending", "Running", "Ready", "Failed", "Terminating", "Suspended"]


class PodTemplateMetadata(MabeamModel):
    labels: dict[str, str] = Field(default_factory=dict, description="Labels added to the agent's Pod.")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations added to the agent's Pod."
    )


class PodTemplate(MabeamModel):
    """A Kubernetes PodTemplateSpec. The pod spec is checked by the operator in full."""

    metadata: PodTemplateMetadata = Field(
        default_factory=PodTemplateMetadata, description="Labels and annotations for the Pod."
    )
    spec: dict[str, Any] = Field(
        description="A core/v1 PodSpec (containers, env, resources, ...). restartPolicy must be "
        "Always or unset: the kubelet restarts crashed containers, the operator replaces lost pods.",
        # The fields the spec's CEL rules read are declared: Kubernetes hides fields that are
        # only preserved (x-kubernetes-preserve-unknown-fields) from CEL, and would refuse the
        # CRD with "undefined field". The rest of the PodSpec is kept as written.
        json_schema_extra={
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "containers": {
                    "type": "array",
                    "description": "The agent's containers (core/v1 Container); at least one.",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
                "restartPolicy": {"type": "string", "description": "Always, or unset."},
            },
        },
    )


class RestartPolicy(MabeamModel):
    """How the operator backs off before it replaces a Pod that was deleted, evicted or Failed."""

    initial_delay_seconds: float = Field(
        default=1.0, ge=0, le=3600, description="Delay before the first replacement."
    )
    max_delay_seconds: float = Field(
        default=300.0, ge=0, le=86400, description="The cap of the exponential backoff."
    )
    reset_after_seconds: float = Field(
        default=600.0,
        ge=0,
        le=86400,
        description="A pod that ran Ready this long resets the backoff to its initial delay.",
    )


class AgentSpec(MabeamModel):
    template: PodTemplate = Field(description="The Pod that runs the agent.")
    capabilities: list[Capability] = Field(
        default_factory=list,
        max_length=64,
        description="What the agent can do. Each one becomes a label "
        "capability.mabeam.io/<name>=true on the Agent and its Pod, so selectors find it.",
    )
    weight: float = Field(default=1.0, gt=0, le=1_000_000, description="Voting weight in weighted protocols.")
    priority: int = Field(
        default=0,
        ge=-1_000_000,
        le=1_000_000,
        description="Priority in priority resolution: the higher wins.",
    )
    suspend: bool = Field(
        default=False, description="True stops the agent's Pod and keeps it stopped; the Agent stays."
    )
    restart: RestartPolicy = Field(
        default_factory=RestartPolicy, description="Backoff for replacing lost Pods."
    )


class AgentStatus(MabeamModel):
    phase: AgentPhase | None = Field(default=None, description="A summary for humans.")
    pod_name: str | None = Field(default=None, description="The Pod that currently runs the agent.")
    node: str | None = Field(default=None, description="The node the Pod runs on.")
    service_account: str | None = Field(default=None, description="The agent's identity.")
    restarts: int = Field(default=0, ge=0, description="Container restarts in the current Pod.")
    replacements: int = Field(
        default=0, ge=0, description="How many times the operator has replaced a lost Pod."
    )
    incarnation: int = Field(default=0, ge=0, description="Serial number of the current Pod.")
    template_hash: str | None = Field(default=None, description="Hash of the template the Pod runs.")
    next_restart_at: str | None = Field(
        default=None, description="When the next Pod will be created (backoff), RFC 3339."
    )
    backoff_seconds: float | None = Field(default=None, description="The current backoff delay.")
    ready_since: str | None = Field(default=None, description="When the Pod last became Ready.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status reflects."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Degraded, Invalid.")


AGENT = KindInfo(
    name_max_length=63,  # a label value (mabeam.io/agent)
    kind="Agent",
    plural="agents",
    singular="agent",
    short_names=("ag", "mba"),
    spec=AgentSpec,
    status=AgentStatus,
    description="A software agent run as a Pod, with capabilities, a weight and a priority.",
    printer_columns=(
        PrinterColumn("Phase", ".status.phase", description="Lifecycle phase."),
        PrinterColumn("Pod", ".status.podName", description="Current Pod."),
        PrinterColumn("Restarts", ".status.restarts", type="integer", description="Container restarts."),
        PrinterColumn("Weight", ".spec.weight", type="number", priority=1),
        PrinterColumn("Priority", ".spec.priority", type="integer", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    spec_validations=(
        (
            "has(self.template.spec.containers) && size(self.template.spec.containers) > 0",
            "spec.template.spec.containers must list at least one container",
        ),
        (
            "!has(self.template.spec.restartPolicy) || self.template.spec.restartPolicy == 'Always'",
            "spec.template.spec.restartPolicy must be Always (or unset): the operator supervises the pod",
        ),
        (
            "self.restart.maxDelaySeconds >= self.restart.initialDelaySeconds",
            "spec.restart.maxDelaySeconds must be at least spec.restart.initialDelaySeconds",
        ),
    ),
)
