"""The Authorization Server: password, client-secret and refresh-token grants, expiring bearer tokens.

Tokens look like LogiSense's (HS512 JWTs with the claims the reference lists) and are signed with a
key made at start-up; the emulator also remembers each token it issued, so the admin API can expire
them all at once. Lifetimes follow the emulator clock, which the admin API can move forward.
Error bodies follow OWIN's OAuth server (INFERRED): 400 with `invalid_grant`, `invalid_client` or
`unsupported_grant_type`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.logisense.store import iso

ISSUER = "http://authorizationserver.logisense.com"
DENIED = {"message": "Authorization has been denied for this request."}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Credentials:
    client_id: str
    username: str
    password: str
    client_secret: str = ""


@dataclass
class Auth:
    """Issues and checks tokens; `clock` is the emulator's (movable) time."""

    credentials: Credentials
    clock: Callable[[], float]
    token_ttl_seconds: float = 1800.0
    refresh_token_ttl_seconds: float | None = None  # None: the same as the access token's
    _key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    _access: dict[str, float] = field(default_factory=dict, repr=False)
    _refresh: dict[str, float] = field(default_factory=dict, repr=False)

    def login(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:  # noqa: PLR0911 - one answer per OAuth case
        grant = form.get("grant_type", "")
        client_id = form.get("client_id", "")
        if grant not in ("password", "refresh_token"):
            return 400, {"error": "unsupported_grant_type"}
        if not hmac.compare_digest(client_id, self.credentials.client_id):
            return 400, {"error": "invalid_client", "error_description": "The client_id is not registered."}
        if grant == "refresh_token":
            expiry = self._refresh.pop(form.get("refresh_token", ""), None)
            if expiry is None or expiry <= self.clock():
                return 400, {"error": "invalid_grant", "error_description": "The refresh token is invalid or expired."}
            return 200, self._issue()
        if "client_secret" in form and "username" not in form:
            secret = self.credentials.client_secret
            if not secret or not hmac.compare_digest(form["client_secret"], secret):
                return 400, {"error": "invalid_client", "error_description": "The client secret is incorrect."}
            return 200, self._issue()
        user_ok = hmac.compare_digest(form.get("username", ""), self.credentials.username)
        password_ok = hmac.compare_digest(form.get("password", ""), self.credentials.password)
        if not (user_ok and password_ok):
            return 400, {"error": "invalid_grant", "error_description": "The user name or password is incorrect."}
        return 200, self._issue()

    def check(self, authorization: str | None) -> bool:
        if not authorization or not authorization.lower().startswith("bearer "):
            return False
        expiry = self._access.get(authorization[7:].strip())
        return expiry is not None and expiry > self.clock()

    def expire_all(self) -> int:
        """Every issued token stops working (the refresh tokens too); returns how many there were."""
        count = len(self._access)
        self._access.clear()
        self._refresh.clear()
        return count

    def _issue(self) -> dict[str, Any]:
        now = self.clock()
        expires = now + self.token_ttl_seconds
        refresh_expires = now + (self.refresh_token_ttl_seconds or self.token_ttl_seconds)
        self._prune(now)
        access = self._jwt(
            {
                "ownerId": "1",
                "actingOwnerId": "1",
                "userId": "1",
                "roleId": "1",
                "isInteractive": "false",
                "unique_name": self.credentials.username or self.credentials.client_id,
                "sub": self.credentials.username or self.credentials.client_id,
                "iss": ISSUER,
                "aud": self.credentials.client_id,
                "exp": int(expires),
                "nbf": int(now),
                "jti": uuid.uuid4().hex,
            }
        )
        refresh = self._jwt(
            {
                "refreshTokenGuid": str(uuid.uuid4()),
                "ownerId": "1",
                "actingOwnerId": "1",
                "userId": "1",
                "aud": self.credentials.client_id,
                "jti": uuid.uuid4().hex,
                "iat": int(now),
                "nbf": int(now),
                "exp": int(refresh_expires),
                "iss": ISSUER,
            }
        )
        self._access[access] = expires
        self._refresh[refresh] = refresh_expires
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": int(self.token_ttl_seconds) if self.token_ttl_seconds >= 1 else self.token_ttl_seconds,
            "audience": self.credentials.client_id,
            ".issued": iso(now),
            ".expires": iso(expires),
            "actingOwnerId": 1,
        }

    def _jwt(self, claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"alg": "HS512", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha512).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def _prune(self, now: float) -> None:
        if len(self._access) > 10_000:
            self._access = {t: e for t, e in self._access.items() if e > now}
            self._refresh = {t: e for t, e in self._refresh.items() if e > now}
