"""Certificates and keys of the real control plane: one CA, the API server's serving
certificate, client certificates (the admin, the controller manager, the kubelet) and the
ServiceAccount token signing key pair. Written once per cluster folder, as PEM files."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..kube import certs

__all__ = ["Pki", "write_pki"]



@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files in a cluster folder."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def client_cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def client_key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def write_pki(directory: Path) -> Pki:
    """Create the CA, the serving certificate, the client certificates and the SA key pair."""
    pki = Pki(Path(directory))
    pki.dir.mkdir(parents=True, exist_ok=True)
    ca = certs.new_ca("mabeam-cluster-ca")
    _write(pki.ca_cert, certs.pem_cert(ca.cert))
    _write(pki.ca_key, certs.pem_key(ca.key), private=True)

    def issue(
        name: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName] | None,
        cert_path: Path,
        key_path: Path,
    ) -> None:
        key, cert = certs.issue(ca, name, usage, sans)
        _write(cert_path, certs.pem_cert(cert))
        _write(key_path, certs.pem_key(key), private=True)

    issue(
        certs.subject("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        ],
        pki.serving_cert,
        pki.serving_key,
    )
    for user, groups in CLIENTS.items():
        issue(
            certs.subject(user, groups),
            ExtendedKeyUsageOID.CLIENT_AUTH,
            None,
            pki.client_cert(_file(user)),
            pki.client_key(_file(user)),
        )

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(pki.sa_key, certs.pem_key(sa_key), private=True)
    _write(
        pki.sa_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return pki


#: Client certificates: user name -> groups (the certificate's organisations).
CLIENTS: dict[str, tuple[str, ...]] = {
    "kubernetes-admin": ("system:masters",),
    # With --use-service-account-credentials=false every controller acts as the manager
    # itself, so it needs the union of the controllers' roles: system:masters, for a test cluster.
    "system:kube-controller-manager": ("system:masters",),
    # The local kubelet also binds pods to its node (there is no kube-scheduler), which the
    # Node authorizer does not allow a kubelet: it is in system:masters as well.
    "system:node:mabeam-node": ("system:nodes", "system:masters"),
    "system:kwok": ("system:masters",),
}


def _file(user: str) -> str:
    return user.replace(":", "-")


def client_files(pki: Pki, user: str) -> tuple[Path, Path]:
    """The certificate and key of a client in ``CLIENTS``."""
    return pki.client_cert(_file(user)), pki.client_key(_file(user))
