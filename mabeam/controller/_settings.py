"""Operator settings: grouped, documented, tuned in ``@kopf.on.startup``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class AgentSettings:
    #: How often an Agent is reconciled even when nothing happened (a safety net for lost events).
    resync_seconds: float = field(default_factory=lambda: _env_float("MABEAM_AGENT_RESYNC_SECONDS", 30.0))
    #: The delay before retrying after an API error or a lost write race.
    retry_seconds: float = field(default_factory=lambda: _env_float("MABEAM_RETRY_SECONDS", 1.0))
    #: How long a new Agent's first status (Pending, its pod created) waits to be written: a pod
    #: that is Ready sooner makes one status write (Ready) instead of two.
    pending_status_seconds: float = field(
        default_factory=lambda: _env_float("MABEAM_AGENT_PENDING_STATUS_SECONDS", 10.0)
    )


@dataclass
class WatchSettings:
    #: Server-side watch timeout: the API server ends each watch after this many seconds.
    server_timeout_seconds: int = 300
    #: Client-side timeout, a little longer, against silent watch freezes.
    client_timeout_seconds: int = 330


@dataclass
class Settings:
    agents: AgentSettings = field(default_factory=AgentSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
