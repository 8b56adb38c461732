"""What every Salesforce client of sfls authenticates with: the TLS trust, the OAuth token request, and the
session a Pub/Sub API call carries (shared/salesforce.py logs in; services/listener/ uses these too)."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field

from shared.settings import SalesforceSettings


def ssl_context(settings: SalesforceSettings) -> ssl.SSLContext:
    """Verification that trusts `ca_file` when set, the system store otherwise; never disabled."""
    return ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else ssl.create_default_context()


def token_form(settings: SalesforceSettings) -> dict[str, str]:
    form = {"client_id": settings.client_id, "client_secret": settings.client_secret.get_secret_value()}
    if settings.auth == "refresh_token":
        form.update(grant_type="refresh_token", refresh_token=settings.refresh_token.get_secret_value())
    else:
        password = settings.password.get_secret_value() + settings.security_token.get_secret_value()
        form.update(grant_type="password", username=settings.username, password=password)
    return form


@dataclass(frozen=True)
class Credentials:
    """What a Pub/Sub API call authenticates with (its metadata); `repr` never shows the token."""

    access_token: str = field(repr=False)
    instance_url: str
    org_id: str


def org_of(identity: str) -> str:
    """The org id of an identity URL `.../id/<orgId>/<userId>` ("" when it is not one)."""
    match = re.search(r"/id/(00D[A-Za-z0-9]{12,15})/", identity)
    return match.group(1) if match else ""
