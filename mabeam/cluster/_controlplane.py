"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager
and the local kubelet (and kwok, for scale runs), as child processes.

    plane = ControlPlane(workdir, bin_dir=build_binaries())
    plane.start()          # returns once the API server is ready and `default` exists
    ...                    # plane.admin_kubeconfig, plane.url
    plane.stop()           # SIGTERM, then SIGKILL, of every process; also in __exit__

The flags are those a real cluster uses where MABEAM relies on them: RBAC (and the Node
authorizer), client-certificate and ServiceAccount-token authentication with signed tokens
(TokenRequest), the default admission plugins (ValidatingAdmissionPolicy, ServiceAccount,
NamespaceLifecycle, PodSecurity ...), the garbage collector, the namespace controller and the
ServiceAccount controllers. There is no scheduler: the local kubelet binds pods to its node.

Children started by a foreground ``ControlPlane`` die with their parent (``PR_SET_PDEATHSIG``),
so a killed test run leaves nothing behind; ``detached=True`` (``mabeam cluster up``) starts
them in their own session and records their pids in ``state.json`` for ``mabeam cluster down``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..local.kubelet import die_with_parent as _die_with_parent
from ._pki import Pki, client_files, write_pki

__all__ = ["CONTROLLERS", "ControlPlane", "ControlPlaneError", "stop_recorded"]

#: kube-controller-manager's controllers that MABEAM relies on (owner references, namespace
#: deletion, ServiceAccounts and their tokens, the root CA ConfigMap, the operator Deployment).
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "deployment-controller",
    "replicaset-controller",
)

NODE_NAME = "mabeam-node"


class ControlPlaneError(RuntimeError):
    """A component did not start; the message names its log file."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class ControlPlane:
    """One control plane in ``workdir`` (certificates, etcd data, logs, kubeconfigs)."""

    workdir: Path
    bin_dir: Path
    detached: bool = False
    kubelet: bool = True
    kwok: bool = False
    #: write an audit log (metadata of every request: who, what, the answer's code) to logs/audit.log
    audit: bool = False
    #: extra kube-apiserver flags, e.g. {"max-requests-inflight": "2000"}
    apiserver_flags: Mapping[str, str] = field(default_factory=dict)
    #: the local kubelet's options (see LocalKubelet), as command-line flags of its runner
    kubelet_args: Sequence[str] = ()
    #: image repository -> entrypoint, for containers that only give args
    images: Mapping[str, Sequence[str]] = field(default_factory=dict)
    python: str = sys.executable
    #: the working directory of pod processes (relative commands such as agents/voter.py)
    pod_cwd: Path = field(default_factory=Path.cwd)
    _procs: list[_Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.bin_dir = Path(self.bin_dir)
        self.port = 0

    # ----------------------------------------------------------------- paths

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def pki(self) -> Pki:
        return Pki(self.workdir / "pki")

    @property
    def audit_log(self) -> Path:
        return self.workdir / "logs" / "audit.log"

    @property
    def pods_dir(self) -> Path:
        return self.workdir / "pods"

    def kubeconfig(self, user: str) -> Path:
        """A kubeconfig for a certificate user of ``_pki.CLIENTS``."""
        return self.workdir / f"{user.replace(':', '-')}.kubeconfig"

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        pki = write_pki(self.pki.dir)
        etcd_port, peer_port, self.port = _free_port(), _free_port(), _free_port()
        try:
            self._spawn(
                "etcd",
                [
                    str(self.bin_dir / "etcd"),
                    "--name=mabeam",
                    f"--data-dir={self.workdir / 'etcd'}",
                    f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-cluster=mabeam=http://127.0.0.1:{peer_port}",
                    "--unsafe-no-fsync=true",
                    "--quota-backend-bytes=8589934592",
                    "--log-level=warn",
                ],
            )
            flags = {
                "etcd-servers": f"http://127.0.0.1:{etcd_port}",
                "bind-address": "127.0.0.1",
                "advertise-address": "127.0.0.1",
                "endpoint-reconciler-type": "none",
                "secure-port": str(self.port),
                "cert-dir": str(self.workdir / "apiserver-certs"),
                "tls-cert-file": str(pki.serving_cert),
                "tls-private-key-file": str(pki.serving_key),
                "client-ca-file": str(pki.ca_cert),
                "service-cluster-ip-range": "10.0.0.0/24",
                "service-account-issuer": "https://kubernetes.default.svc.cluster.local",
                "service-account-key-file": str(pki.sa_pub),
                "service-account-signing-key-file": str(pki.sa_key),
                "authorization-mode": "Node,RBAC",
                "allow-privileged": "true",
                "profiling": "false",
                "v": "0",
                **self.apiserver_flags,
            }
            if self.audit:
                policy = self.workdir / "audit-policy.yaml"
                policy.write_text(
                    "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
                    "rules:\n  - level: Metadata\n"
                )
                flags |= {
                    "audit-policy-file": str(policy),
                    "audit-log-path": str(self.audit_log),
                    "audit-log-format": "json",
                    "audit-log-mode": "batch",
                    "audit-log-batch-max-wait": "1s",
                    # Never rotated (0 would mean lumberjack's 100 MB): readers follow one file.
                    "audit-log-maxsize": "1000000",
                }
            self._spawn(
                "kube-apiserver",
                [str(self.bin_dir / "kube-apiserver"), *(f"--{k}={v}" for k, v in flags.items())],
            )
            for user in ("kubernetes-admin", "system:kube-controller-manager", f"system:node:{NODE_NAME}"):
                self._write_kubeconfig(self.kubeconfig(user), user)
            self._write_kubeconfig(self.admin_kubeconfig, "kubernetes-admin")
            self._wait_for(("/readyz", "/api/v1/namespaces/default"), timeout, "kube-apiserver was not ready")
            self._spawn(
                "kube-controller-manager",
                [
                    str(self.bin_dir / "kube-controller-manager"),
                    f"--kubeconfig={self.kubeconfig('system:kube-controller-manager')}",
                    f"--controllers={','.join(CONTROLLERS)}",
                    f"--service-account-private-key-file={pki.sa_key}",
                    f"--root-ca-file={pki.ca_cert}",
                    "--leader-elect=false",
                    "--use-service-account-credentials=false",
                    "--secure-port=0",
                    "--concurrent-gc-syncs=20",
                    "--kube-api-qps=200",
                    "--kube-api-burst=400",
                    "--v=0",
                ],
            )
            if self.kubelet:
                images = json.dumps({k: list(v) for k, v in self.images.items()})
                self._spawn(
                    "kubelet",
                    [
                        self.python,
                        "-m",
                        "mabeam.cluster._kubelet",
                        f"--kubeconfig={self.kubeconfig(f'system:node:{NODE_NAME}')}",
                        f"--workdir={self.pods_dir}",
                        f"--node={NODE_NAME}",
                        f"--images={images}",
                        *self.kubelet_args,
                    ],
                    cwd=self.pod_cwd,
                )
            if self.kwok:
                self._spawn(
                    "kwok",
                    [
                        str(self.bin_dir / "kwok"),
                        f"--kubeconfig={self.admin_kubeconfig}",
                        f"--config={Path(__file__).with_name('kwok-stages.yaml')}",
                        "--manage-all-nodes=false",
                        "--manage-nodes-with-label-selector=type=kwok",
                        "--cidr=10.64.0.0/12",
                        "--node-ip=127.0.0.1",
                        "--server-address=127.0.0.1:0",
                    ],
                )
            # The ServiceAccount controller works: `default` has its `default` ServiceAccount.
            self._wait_for(
                ("/api/v1/namespaces/default/serviceaccounts/default",),
                timeout,
                "kube-controller-manager created no ServiceAccount",
            )
            if self.kubelet:
                self._wait_for(
                    (f"/api/v1/nodes/{NODE_NAME}",),
                    timeout,
                    f"the local kubelet registered no Node (see {self.workdir / 'logs' / 'kubelet.log'})",
                )
        except BaseException:
            self.stop()
            raise
        if self.detached:
            self._record()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every process in reverse order of start, SIGKILL what is left after ``grace``."""
        for proc in reversed(self._procs):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while proc.popen.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.popen.wait()
        self._procs.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / "state.json").unlink()

    def alive(self) -> dict[str, bool]:
        return {p.name: p.popen.poll() is None for p in self._procs}

    # ----------------------------------------------------------------- helpers

    def _spawn(self, name: str, argv: list[str], cwd: Path | None = None) -> None:
        log = self.workdir / "logs" / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=self.detached,
                preexec_fn=None if self.detached else _die_with_parent,
                cwd=cwd or self.workdir,
            )
        self._procs.append(_Proc(name, popen, log))

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.popen.poll() is not None:
                tail = proc.log.read_text(errors="replace")[-3000:]
                raise ControlPlaneError(
                    f"{proc.name} exited with code {proc.popen.returncode}; see {proc.log}:\n{tail}"
                )

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        cert, key = client_files(self.pki, "kubernetes-admin")
        context.load_cert_chain(str(cert), str(key))
        return context

    def request(self, path: str) -> Any:
        """A GET as the admin (for readiness checks); the decoded JSON body.

        Raises ``urllib.error.HTTPError`` (closed) for an error status.
        """
        try:
            with urllib.request.urlopen(self.url + path, context=self._ssl(), timeout=10) as resp:
                body = resp.read()
                if resp.headers.get_content_type() != "application/json":
                    return body.decode(errors="replace")
                return json.loads(body or b"null")
        except urllib.error.HTTPError as exc:
            exc.close()
            raise

    def _wait_for(self, paths: tuple[str, ...], timeout: float, failure: str) -> None:
        """Poll until every path answers 200 (every child still running), or fail with ``failure``."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                for path in paths:
                    self.request(path)
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        raise ControlPlaneError(f"{failure} within {timeout:g} s (last answer: {last})")

    def _write_kubeconfig(self, path: Path, user: str) -> None:
        cert, key = client_files(self.pki, user)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mabeam",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(
                            self.pki.ca_cert.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
                        "client-key-data": base64.b64encode(key.read_bytes()).decode(),
                    },
                }
            ],
            "contexts": [{"name": "mabeam", "context": {"cluster": "mabeam", "user": user}}],
            "current-context": "mabeam",
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(config, f)

    def _record(self) -> None:
        state = {
            "url": self.url,
            "kubeconfig": str(self.admin_kubeconfig),
            "pids": [{"name": p.name, "pid": p.popen.pid} for p in self._procs],
        }
        (self.workdir / "state.json").write_text(json.dumps(state, indent=2))


def stop_recorded(workdir: Path, grace: float = 10.0) -> list[str]:
    """``mabeam cluster down``: stop the processes that ``state.json`` records; their names."""
    path = Path(workdir) / "state.json"
    if not path.exists():
        return []
    state = json.loads(path.read_text())
    stopped = []
    for entry in reversed(state.get("pids") or []):
        pid = int(entry["pid"])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
            stopped.append(str(entry["name"]))
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    path.unlink()
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True
