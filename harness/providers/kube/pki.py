"""The platform CA and the gateway's server certificate in a cluster. The
certificate must name the load balancer's address, which the cloud gives only
after the gateway's Service exists, so the pair is issued when the names are
known and issued again when a name is missing or it is about to expire.
"""

from __future__ import annotations

import datetime as dt

from ...tls import make_ca, make_server_cert


class GatewayPKI:
    """The platform CA and the gateway's server certificate (the chain, like
    the local provider's) for the names the gateway is reached by. The CA key
    is not kept: a new name means a new CA."""

    def __init__(self, ca_pem: bytes, cert_pem: bytes, key_pem: bytes):
        self.ca_pem, self.cert_pem, self.key_pem = ca_pem, cert_pem, key_pem

    @classmethod
    def issue(cls, platform: str, hosts: list[str]) -> "GatewayPKI":
        from cryptography.hazmat.primitives import serialization
        ca_key, ca = make_ca(f"stackproof {platform} CA")
        key, cert = make_server_cert(ca_key, ca, hosts)
        pem = serialization.Encoding.PEM
        return cls(ca.public_bytes(pem), cert.public_bytes(pem) + ca.public_bytes(pem),
                   key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def hosts(self) -> set[str]:
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return set()
        return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
            str(n) for n in san.get_values_for_type(x509.IPAddress)}

    def not_after(self) -> dt.datetime:
        from cryptography import x509
        return x509.load_pem_x509_certificate(self.cert_pem).not_valid_after_utc

    def covers(self, hosts: list[str]) -> bool:
        """Valid for another day for every one of ``hosts`` (a damaged certificate covers nothing)."""
        try:
            have = self.hosts()
            fresh = self.not_after() - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=1)
        except ValueError:
            return False
        return fresh and all(h in have for h in hosts)
