"""TLS for the local API server: a CA and a serving certificate made in memory at start-up.

kubectl (client-go) sends a kubeconfig's credentials only over TLS: against a plain-HTTP server
it is anonymous, whatever the kubeconfig says. A server that must see who calls therefore
serves HTTPS with a certificate for ``127.0.0.1``/``localhost`` (and its host), signed by a CA
of its own whose certificate goes into the kubeconfigs it writes
(``certificate-authority-data``): clients verify the server as they would a real cluster's.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mabeam.kube import certs

__all__ = ["ServingTls", "make_serving_tls"]


@dataclasses.dataclass(frozen=True)
class ServingTls:
    """The server's TLS context and the CA certificate clients trust (PEM)."""

    context: ssl.SSLContext
    ca_pem: bytes

    @property
    def ca_data(self) -> str:
        """The CA certificate as a kubeconfig's ``certificate-authority-data``."""
        return base64.b64encode(self.ca_pem).decode()


def make_serving_tls(host: str) -> ServingTls:
    """A new CA and a certificate signed by it for ``host``, ``127.0.0.1``, ``::1``, ``localhost``."""
    ca = certs.new_ca("mabeam-local-ca")
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    try:
        address = ipaddress.ip_address(host)
        if address not in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")):
            names.append(x509.IPAddress(address))
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
    key, cert = certs.issue(
        ca, certs.subject("mabeam-local-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, names
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # ssl loads a certificate chain from files only: a private temporary folder, gone at once.
    with tempfile.TemporaryDirectory(prefix="mabeam-tls-") as folder:
        cert_file, key_file = Path(folder) / "tls.crt", Path(folder) / "tls.key"
        cert_file.write_bytes(certs.pem_cert(cert))
        key_file.touch(mode=0o600)
        key_file.write_bytes(certs.pem_key(key))
        context.load_cert_chain(cert_file, key_file)
    return ServingTls(context, certs.pem_cert(ca.cert))
