"""A broker with a SASL_SSL (SCRAM-SHA-512) listener, optionally with Kafka's StandardAuthorizer.

The certificate comes from a throwaway local CA issued for localhost/127.0.0.1 (a PEM keystore); SCRAM
users are created when the storage is formatted. The PLAINTEXT broker and controller listeners stay on
loopback for the broker's own readiness check and inter-broker traffic; with the authorizer on, their
principal (User:ANONYMOUS) and User:admin are super users, and every other principal gets only what an
ACL allows (`allow.everyone.if.no.acl.found=false`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from cryptography.hazmat.primitives import serialization

from devstack.kafka import LocalBroker, default_cache_dir, fetch_jars, free_port
from shared.acls import Acl

JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-Pw-41d9e2"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@dataclass(frozen=True)
class SecureBroker:
    bootstrap_servers: str  # the SASL_SSL listener
    ca_file: Path

    def client_config(self, user: str, password: str) -> dict[str, str]:
        """librdkafka settings of a SCRAM user on the SASL_SSL listener."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password,
            "ssl.ca.location": str(self.ca_file),
        }

    def environment(self, user: str, password: str) -> dict[str, str]:
        """The same as SFLS_KAFKA__* pass-through variables, as a deployment sets them."""
        return {
            "SFLS_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "SFLS_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "SFLS_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "SFLS_KAFKA__SASL_USERNAME": user,
            "SFLS_KAFKA__SASL_PASSWORD": password,
            "SFLS_KAFKA__SSL_CA_LOCATION": str(self.ca_file),
        }

    def admin(self) -> AdminClient:
        return AdminClient(self.client_config(ADMIN_USER, ADMIN_PASSWORD))


@contextlib.contextmanager
def secure_broker(folder: Path, users: dict[str, str], *, authorizer: bool = False) -> Iterator[SecureBroker]:
    """Start the broker in `folder` with these SCRAM users (name -> password); stop it afterwards."""
    authority = trustme.CA(organization_name="sfls kafka security test")
    cert = authority.issue_cert("localhost", "127.0.0.1")
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )  # Kafka's PEM keystore reads PKCS#8 keys only
    folder.mkdir(parents=True, exist_ok=True)
    keystore = folder / "keystore.pem"
    keystore.write_bytes(pkcs8 + b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    ca_file = folder / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    port, controller_port, secure_port = free_port(), free_port(), free_port()
    properties = {
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": JAAS,
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": str(keystore),
    }
    if authorizer:
        properties |= {
            "authorizer.class.name": AUTHORIZER,
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:ANONYMOUS;User:{ADMIN_USER}",
            "auto.create.topics.enable": "false",
        }
    scram = [
        arg
        for name, password in {ADMIN_USER: ADMIN_PASSWORD, **users}.items()
        for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
    ]  # passwords without ',', '=' or ']': they go inside StorageTool's --add-scram value
    broker = LocalBroker(
        state_dir=folder / "state",
        lib_dir=fetch_jars(default_cache_dir()),
        port=port,
        controller_port=controller_port,
        listeners=(
            f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},SASL_SSL://127.0.0.1:{secure_port}"
        ),
        advertised_listeners=f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure_port}",
        security_protocol_map="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
        extra_properties=properties,
        format_args=tuple(scram),
    )
    try:
        broker.start(timeout=180)
        yield SecureBroker(f"127.0.0.1:{secure_port}", ca_file)
    finally:
        broker.stop()


_TYPES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "transactionalId": ResourceType.TRANSACTIONAL_ID}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATIONS = {
    "Read": AclOperation.READ,
    "Write": AclOperation.WRITE,
    "Create": AclOperation.CREATE,
    "Describe": AclOperation.DESCRIBE,
}


def binding(acl: Acl, principal: str) -> AclBinding:
    return AclBinding(
        _TYPES[acl.resource_type],
        acl.name,
        _PATTERNS[acl.pattern],
        principal,
        "*",
        _OPERATIONS[acl.operation],
        AclPermissionType.ALLOW,
    )


def grant(broker: SecureBroker, principal: str, acls: list[Acl], timeout: float = 30.0) -> None:
    """Create exactly these ALLOW bindings and wait until the authorizer lists them all."""
    admin = broker.admin()
    wanted = [binding(acl, principal) for acl in acls]
    if not wanted:
        return
    for future in admin.create_acls(wanted).values():
        future.result()
    everything = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        principal,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    deadline = time.monotonic() + timeout
    listed: list[Any] = []
    while time.monotonic() < deadline:
        listed = admin.describe_acls(everything).result()
        if set(wanted) <= set(listed):
            return
        time.sleep(0.2)
    raise AssertionError(f"the authorizer did not list the granted ACLs within {timeout:g} s; last seen {listed}")
