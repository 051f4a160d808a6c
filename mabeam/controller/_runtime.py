"""The operator's process-wide pieces: clock, login, startup settings, shared memo."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from ..core.anomaly import Baseline, DetectorConfig
from ..core.economics.sealing import SealingKey
from ..errors import MabeamError
from ..kube.client import Kube, load_config
from ._metrics import Metrics
from ._settings import Settings


def clock() -> dt.datetime:
    """The one place the operator reads the wall clock; the cores receive it as an argument."""
    return dt.datetime.now(dt.UTC)


@dataclass
class Runtime:
    """What every handler shares (kopf passes it as ``memo``)."""

    kubeconfig: str | None = None
    settings: Settings = field(default_factory=Settings)
    metrics: Metrics = field(default_factory=Metrics)
    #: How the API client is made (tests substitute a subclass that injects faults).
    kube_factory: type[Kube] = Kube
    #: The namespaces the operator watches (kopf's patterns); none: the whole cluster.
    namespaces: tuple[str, ...] = ()
    kube: Kube = field(init=False)
    #: Per-protocol baselines of ended sessions, for anomaly detection (see _anomaly.py).
    baselines: dict[str, Baseline] = field(default_factory=dict)
    #: The rules of the anomaly detector (thresholds, window, minimum samples).
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    #: The Agents' view and pass queue (``agents.AgentQueue``), made by the first Agent event.
    agent_queue: Any = None
    #: The private key sealed bids are encrypted to, once loaded (see _sealing.py).
    sealing_key: SealingKey | None = None

    def __copy__(self) -> Runtime:
        # kopf shallow-copies the memo for every object; all objects share one runtime.
        return self


def connection_info(kubeconfig: str | None) -> kopf.ConnectionInfo:
    """Translate a kubeconfig (file, $KUBECONFIG, in-cluster) into kopf's credentials."""
    config = load_config(kubeconfig)
    single = config.get()
    if single is None:
        raise MabeamError(f"The kubeconfig {kubeconfig or '(default)'} has no current context.")
    cluster, user = single.cluster, single.user
    token = user.token if user else None
    token_file = getattr(user, "token_file", None)
    if user and not token and token_file:  # in-cluster: a projected ServiceAccount token
        token = Path(str(token_file)).read_text().strip()
    return kopf.ConnectionInfo(
        server=cluster.server,
        ca_path=cluster.certificate_auth if cluster.certificate_auth else None,
        ca_data=cluster.certificate_auth_data.encode() if cluster.certificate_auth_data else None,
        insecure=bool(cluster.insecure) or cluster.server.startswith("http://"),
        token=token,
        certificate_path=(user.client_cert if user and user.client_cert else None),
        certificate_data=(user.client_cert_data.encode() if user and user.client_cert_data else None),
        private_key_path=(user.client_key if user and user.client_key else None),
        private_key_data=(user.client_key_data.encode() if user and user.client_key_data else None),
        default_namespace=single.namespace,
    )


#: The API server accepts JSON nested up to 10 000 levels (in a free-form field: a Variable's
#: value, a price). Decoding, encoding, comparing or copying such an object takes one to three
#: frames a level, far beyond Python's default limit of 1 000: one such Variable made every watch
#: of Variables fail with RecursionError, and with it the whole operator, again after every
#: restart. The C stack this needs (about 3 MB at 10 000 levels) fits in a thread's 8 MB.
RECURSION_LIMIT = 40_000


def allow_deep_json() -> None:
    """Let this process decode and handle anything the API server accepts."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))


class NoEssenceStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff-base storage without the essence it builds of every object on every event.

    kopf builds that essence (a deep copy of the whole body, a quarter of the operator's CPU
    with 1 000 Agents) to detect field changes for on.create/update/resume/field handlers,
    whether or not any is registered. MABEAM registers none (event handlers and daemons only;
    ``tests/unit/test_runtime_settings.py`` checks it), so the essence is never read: an empty
    one is built.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return {}


@kopf.on.login()
def login(memo: Runtime, **_: Any) -> kopf.ConnectionInfo:
    return connection_info(memo.kubeconfig)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Runtime, **_: Any) -> None:
    ours = memo.settings
    settings.watching.server_timeout = ours.watch.server_timeout_seconds
    settings.watching.client_timeout = ours.watch.client_timeout_seconds
    settings.watching.connect_timeout = 30
    settings.persistence.finalizer = "mabeam.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="mabeam.io")
    settings.persistence.diffbase_storage = NoEssenceStorage(
        prefix="mabeam.io", key="last-handled-configuration"
    )
    settings.posting.reporting_component = "mabeam-operator"
    # Lifecycle steps are posted as Events explicitly (kopf.event); of the log lines, only
    # warnings and errors become Events, so that "handler succeeded" chatter stays in the logs.
    settings.posting.level = logging.WARNING
    memo.kube = memo.kube_factory.connect(memo.kubeconfig)


async def cleanup(memo: Runtime, **_: Any) -> None:
    """Close the API client: registered by the package after every handler module's cleanup
    (kopf runs them in the order they were registered), so that their background tasks (watches,
    projections, passes) stop before the client they use is closed."""
    await memo.kube.close()
