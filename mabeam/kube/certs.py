"""Certificates for a control plane of our own: a CA and the leaf certificates it signs.

Used by the real control plane (``mabeam.cluster``: the API server's serving certificate, the
clients' certificates) and by ``mabeam local``'s TLS (a serving certificate). ECDSA P-256,
SHA-256, valid for a year from five minutes ago (clocks differ a little).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["Authority", "issue", "new_ca", "pem_cert", "pem_key", "subject"]

_VALID = _dt.timedelta(days=365)


def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def subject(common: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    """A certificate's subject: the user name (CN) and its groups (O), as Kubernetes reads them."""
    attrs = [x509.NameAttribute(x509.NameOID.COMMON_NAME, common)]
    attrs += [x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name(attrs)


def _usage(*, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=sign,
        crl_sign=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _start() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class Authority:
    """A CA: its key and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def new_ca(common: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = subject(common)
    now = _start()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert)


def issue(
    ca: Authority,
    name: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new key and a certificate for it signed by ``ca``: for a server or a client (``usage``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _start()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca.key, hashes.SHA256())
