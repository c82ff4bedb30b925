"""A throwaway certificate authority for tests over real TLS: a server certificate for
127.0.0.1 and a client certificate for "ada", as PEM files (conftest's ``pki`` fixture)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str, key, issuer: str, issuer_key, *, ca: bool = False, usage=None, san=None
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def issue(out: Path, ca_name: str = "hookgate test CA") -> dict[str, Path]:
    """A throwaway CA (``ca``), a server certificate for 127.0.0.1 (``server``) and a client
    certificate for "ada" (``client``), as PEM files in ``out`` (a certificate with its key).
    CAs of different ``ca_name`` can be trusted side by side."""
    out.mkdir(parents=True, exist_ok=True)
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _issue(ca_name, ca_key, ca_name, ca_key, ca=True)
    server = _issue(
        "127.0.0.1",
        server_key,
        ca_name,
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))],
    )
    client = _issue("ada", client_key, ca_name, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {}
    for name, cert, key in (("server", server, server_key), ("client", client, client_key)):
        files[name] = out / f"{name}.pem"
        files[name].write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    files["ca"] = out / "ca.pem"
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return files


def serving(files: dict[str, Path]) -> ssl.SSLContext:
    """A server's TLS context with the certificate of ``files`` (what :func:`issue` made)."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(files["server"])
    return tls
