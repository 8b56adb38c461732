"""One local certificate authority for the whole stack, kept in the state folder.

Both emulators serve HTTPS with a certificate for `localhost` and 127.0.0.1 signed by this CA;
sfls's clients trust `ca.pem` through the `ca_file` setting, never by turning verification off.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class LocalCA:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def ensure_ca(state_dir: Path) -> LocalCA:
    """Create the CA and the server certificate once; later calls reuse them."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca = LocalCA(state_dir / "ca.pem", state_dir / "server.pem", state_dir / "server.key")
    if ca.ca_file.exists() and ca.cert_file.exists() and ca.key_file.exists():
        return ca
    authority = trustme.CA(organization_name="sfls devstack")
    cert = authority.issue_cert("localhost", "127.0.0.1", "::1")
    authority.cert_pem.write_to_path(str(ca.key_file.with_name("ca.pem.tmp")))
    cert.private_key_pem.write_to_path(str(ca.key_file))
    ca.key_file.chmod(0o600)
    cert.cert_chain_pems[0].write_to_path(str(ca.cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(ca.cert_file), append=True)
    ca.key_file.with_name("ca.pem.tmp").replace(ca.ca_file)
    return ca
