"""The Salesforce REST client of sfls, through simple-salesforce (the listener's streaming client, over
aiosfstream-ng, is services/listener/streaming.py).

REST (`SalesforceRest`, synchronous; async callers use `asyncio.to_thread`):
- Logs in at `{instance_url}/services/oauth2/token` (password grant, or refresh-token grant when
  `settings.auth == "refresh_token"`), then wraps `simple_salesforce.Salesforce` built from the
  session id. The requests session trusts `settings.ca_file` with `trust_env = False` (otherwise
  REQUESTS_CA_BUNDLE would override it) and sends `Sforce-Call-Options: client=<client_tag>` on
  every call, so our own writes are recognisable in changeOrigin.
- simple-salesforce cannot refresh a session it did not create, and drops extra headers on its
  own retry, so re-authentication is ours: on `SalesforceExpiredSession` we log in again once
  and repeat the call.
- Bulk API 2.0 (`bulk_upsert`, `bulk_delete`, `bulk_query`, shared/salesforce_bulk.py `BulkJobs`) goes
  through simple-salesforce's `bulk2` client on the same session: one job per call from a temporary CSV file.
- The org's API budget (shared/budget.py): every response's `Sforce-Limit-Info` header feeds the client's
  Budget through a session response hook, `limits()` reads `/limits`, and every call passes the budget's gate
  first. A call refused with REQUEST_LIMIT_EXCEEDED waits there for the window to free and is repeated.
- Errors map onto shared.errors as shared/salesforce_errors.py says; a refused login is ConfigError naming
  the settings to check. Secrets never appear in messages.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceOperationError,
    SalesforceRefusedRequest,
)

from shared.budget import API_REQUESTS, Budget, OnChange, Work
from shared.errors import ConfigError, RejectedError, TransientError
from shared.salesforce_auth import Credentials, org_of, token_form
from shared.salesforce_bulk import BulkJobs
from shared.salesforce_errors import AUTH_HINT, check_ids, check_name, error_summary, map_error, result_error
from shared.settings import SalesforceSettings, Settings

T = TypeVar("T")
COLLECTION_LIMIT = 200


def _query_more(sf: Salesforce, url: str) -> Any:
    return sf.query_more(url, identifier_is_url=True)


def _collection_call(sf: Salesforce, path: str, method: str, body: dict[str, Any]) -> Any:
    return sf.restful(path, method=method, json=body)


class RecordReader(Protocol):
    """The read side of SalesforceRest the services depend on, so their tests can hand in a fake."""

    def query_by_ids(
        self,
        sobject: str,
        fields: Iterable[str],
        ids: Iterable[str],
        chunk_size: int = 200,
        include_deleted: bool = False,
    ) -> Iterator[dict[str, Any]]: ...

    def query_all_iter(self, soql: str, include_deleted: bool = False) -> Iterator[dict[str, Any]]: ...


class SalesforceRest(BulkJobs):
    """simple-salesforce with our login, CA trust, call tagging, re-authentication and error mapping."""

    def __init__(self, settings: SalesforceSettings, budget: Budget | None = None) -> None:
        self.settings = settings
        self.budget = budget or Budget()
        self.budget.attach(self.limits)
        self.session = requests.Session()
        self.session.hooks["response"].append(self._observe)
        if settings.ca_file:
            self.session.verify = settings.ca_file
            self.session.trust_env = False
        self.session.headers["Sforce-Call-Options"] = f"client={settings.client_tag}"
        self._sf: Salesforce | None = None
        self._identity = ""  # the token response's `id`: {instance}/id/<orgId>/<userId>
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._describes: dict[str, dict[str, Any]] = {}

    @classmethod
    def for_service(
        cls, settings: Settings, service: str, work: Work, *, poll: bool = False, on_budget_change: OnChange = None
    ) -> SalesforceRest:
        """The client of one service, its budget gated for its kind of work (shared/budget.py); `poll`: read
        `/limits` every `budget.poll_seconds` (long-running services; a command calls `budget.refresh()`)."""
        budget = Budget(settings.budget, service=service, work=work, on_change=on_budget_change)
        rest = cls(settings.salesforce, budget)
        if poll:
            budget.start_polling()
        return rest

    # ---- session ---------------------------------------------------------------------------
    @property
    def counts(self) -> dict[str, int]:
        """API calls made so far, by kind (token, query, sobject, composite, describe, other)."""
        with self._lock:
            return dict(self._counts)

    def _count(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1
        self.budget.count(kind)

    def _observe(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        self.budget.observe_header(response.headers.get("Sforce-Limit-Info"))

    def login(self) -> Salesforce:
        """Get a fresh access token and a simple-salesforce client around it."""
        self._count("token")
        url = f"{self.settings.instance_url}/services/oauth2/token"
        try:
            response = self.session.post(url, data=token_form(self.settings), timeout=self.settings.timeout_seconds)
        except requests.RequestException as exc:
            raise map_error(exc, "login") from None
        if response.status_code >= 500:
            raise TransientError(f"Salesforce login: HTTP {response.status_code}", status=response.status_code)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            code, message = error_summary(body)
            raise ConfigError(f"Salesforce refused the login ({code or response.status_code}: {message}); {AUTH_HINT}")
        instance_url = str(body.get("instance_url") or self.settings.instance_url)
        sf = Salesforce(
            instance_url=instance_url,
            session_id=str(body["access_token"]),
            session=self.session,
            version=self.settings.api_version,
            object_pairs_hook=dict,
        )
        with self._lock:
            self._sf = sf
            self._identity = str(body.get("id") or "")
        return sf

    def credentials(self, *, fresh: bool = False) -> Credentials:
        """The access token, instance URL and org id of the current session (a new login when `fresh`).

        The org id is `settings.org_id` when set, otherwise the one the token response's identity URL names.
        """
        sf = self.login() if fresh else self.sf
        with self._lock:
            identity = self._identity
        org_id = self.settings.org_id or org_of(identity)
        if not org_id:
            raise ConfigError(
                "the Salesforce token response names no org id (its `id` URL); set SFLS_SALESFORCE__ORG_ID "
                "to the org id (Setup > Company Information)"
            )
        return Credentials(access_token=str(sf.session_id), instance_url=f"https://{sf.sf_instance}", org_id=org_id)

    @property
    def sf(self) -> Salesforce:
        """The current simple-salesforce client (logging in on first use)."""
        return self._sf if self._sf is not None else self.login()

    def call(
        self,
        fn: Callable[[Salesforce], T],
        *,
        kind: str = "other",
        what: str = "call",
        spends: tuple[str, ...] = (API_REQUESTS,),
        gated: bool = True,
    ) -> T:
        """Run any simple-salesforce call through the budget's gate, with re-authentication once on an expired
        session, a wait and a repeat on REQUEST_LIMIT_EXCEEDED (when `gated`), and error mapping."""
        sf = self.sf
        relogged = False
        while True:
            if gated:
                self.budget.admit(spends)
            self._count(kind)
            try:
                return fn(sf)
            except SalesforceExpiredSession as exc:
                if relogged:
                    raise map_error(exc, what) from None
                relogged = True
                with self._lock:
                    stale = self._sf is sf
                sf = self.login() if stale else self.sf
            except SalesforceRefusedRequest as exc:
                code, message = error_summary(exc.content)
                if not gated or code != "REQUEST_LIMIT_EXCEEDED":
                    raise map_error(exc, what) from None
                named = [name for name in spends if name != API_REQUESTS and name in message]
                self.budget.exceeded(named[0] if named else API_REQUESTS)
                self.budget.admit(spends, reason="limit_exceeded")
            except (SalesforceError, SalesforceOperationError, requests.RequestException) as exc:
                raise map_error(exc, what) from None

    def limits(self) -> dict[str, Any]:
        """The org's allocations (`GET /limits`): name -> {"Max", "Remaining"}; never held up by the gate."""
        body: dict[str, Any] = self.call(lambda sf: sf.limits(), kind="limits", what="read limits", gated=False)
        return body

    def close(self) -> None:
        self.budget.close()
        self.session.close()

    # ---- queries ---------------------------------------------------------------------------
    def query_all_iter(self, soql: str, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """Every record of a SOQL query, page by page (each page its own call, re-authenticated if needed)."""
        page: dict[str, Any] = self.call(lambda sf: sf.query(soql, include_deleted=include_deleted), kind="query")
        while True:
            yield from page["records"]
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            page = self.call(partial(_query_more, url=str(page["nextRecordsUrl"])), kind="query")

    def query_all(self, soql: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        return list(self.query_all_iter(soql, include_deleted=include_deleted))

    def query_by_ids(
        self,
        sobject: str,
        fields: Iterable[str],
        ids: Iterable[str],
        chunk_size: int = 200,
        include_deleted: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Records by id, `chunk_size` ids per `Id IN (...)` query (keeps the URI short)."""
        names = [check_name(f) for f in fields] or ["Id"]
        if not any(n.lower() == "id" for n in names):
            names.insert(0, "Id")
        check_name(sobject)
        unique = check_ids(ids)
        for start in range(0, len(unique), max(1, chunk_size)):
            chunk = unique[start : start + chunk_size]
            quoted = ",".join(f"'{i}'" for i in chunk)
            # Names and ids were validated against strict patterns above, so nothing can break out of the quotes.
            soql = f"SELECT {', '.join(names)} FROM {sobject} WHERE Id IN ({quoted})"  # noqa: S608
            yield from self.query_all_iter(soql, include_deleted=include_deleted)

    # ---- records ---------------------------------------------------------------------------
    def describe(self, sobject: str) -> dict[str, Any]:
        """The object's describe document, cached for the life of this client."""
        cached = self._describes.get(sobject)
        if cached is None:
            check_name(sobject)
            cached = self.call(lambda sf: getattr(sf, sobject).describe(), kind="describe", what=f"describe {sobject}")
            self._describes[sobject] = cached
        return cached

    def get(self, sobject: str, record_id: str) -> dict[str, Any]:
        check_name(sobject)
        (checked,) = check_ids([record_id])
        return self.call(lambda sf: getattr(sf, sobject).get(checked), kind="sobject", what=f"get {sobject}")

    def create(self, sobject: str, fields: dict[str, Any]) -> str:
        """Create one record; returns its id."""
        check_name(sobject)
        result = self.call(lambda sf: getattr(sf, sobject).create(fields), kind="sobject", what=f"create {sobject}")
        return str(result["id"])

    def update(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        check_name(sobject)
        (checked,) = check_ids([record_id])
        self.call(lambda sf: getattr(sf, sobject).update(checked, fields), kind="sobject", what=f"update {sobject}")

    def delete(self, sobject: str, record_id: str) -> None:
        check_name(sobject)
        (checked,) = check_ids([record_id])
        self.call(lambda sf: getattr(sf, sobject).delete(checked), kind="sobject", what=f"delete {sobject}")

    def upsert(self, sobject: str, external_field: str, value: str, fields: dict[str, Any]) -> bool:
        """Upsert one record by external id (URL-quoted here; simple-salesforce does not); True if created."""
        check_name(sobject)
        check_name(external_field)
        path = f"{external_field}/{quote(str(value), safe='')}"
        status = self.call(
            lambda sf: getattr(sf, sobject).upsert(path, fields), kind="sobject", what=f"upsert {sobject}"
        )
        return bool(status == 201)

    def upsert_collection(
        self, sobject: str, external_field: str, records: Iterable[dict[str, Any]], all_or_none: bool = False
    ) -> list[dict[str, Any]]:
        """Upsert by external id through sObject Collections, 200 records per call; one result per record."""
        check_name(sobject)
        check_name(external_field)
        typed = (
            {"attributes": {"type": sobject}, **{k: v for k, v in r.items() if k != "attributes"}} for r in records
        )
        return self._collection(
            "PATCH",
            typed,
            path=f"composite/sobjects/{sobject}/{external_field}",
            all_or_none=all_or_none,
            what=f"upsert {sobject}",
        )

    def update_collection(self, records: Iterable[dict[str, Any]], *, all_or_none: bool = True) -> list[dict[str, Any]]:
        """Update records of any types (each `{"attributes": {"type": T}, "Id": ..., fields}`) through sObject
        Collections, 200 per call; one result per record. All or none per call: a rejected record raises
        RejectedError naming it; otherwise each record succeeds or fails alone, as its result says."""
        return self._collection("PATCH", records, all_or_none=all_or_none, what="update records", by_id=True)

    def create_collection(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create records of any types (each `{"attributes": {"type": T}, fields}`) through sObject Collections,
        200 per call, each record alone (a duplicate external id fails that record: DUPLICATE_VALUE)."""
        return self._collection("POST", records, all_or_none=False, what="create records")

    def _collection(
        self,
        method: str,
        records: Iterable[dict[str, Any]],
        *,
        all_or_none: bool,
        what: str,
        path: str = "composite/sobjects",
        by_id: bool = False,
    ) -> list[dict[str, Any]]:
        """One sObject Collections call per 200 records (each with its `attributes.type`; with `by_id`, its Id);
        all the results. All or none: the first record Salesforce refused raises RejectedError naming it."""
        batch = list(records)
        results: list[dict[str, Any]] = []
        for start in range(0, len(batch), COLLECTION_LIMIT):
            part = batch[start : start + COLLECTION_LIMIT]
            for record in part:
                check_name(str(record["attributes"]["type"]))
                if by_id:
                    check_ids([record["Id"]])
            body: dict[str, Any] = {"allOrNone": all_or_none, "records": part}
            out: list[dict[str, Any]] = self.call(
                partial(_collection_call, path=path, method=method, body=body), kind="composite", what=what
            )
            results += out or []
            refused = [
                (record, result_error(result))
                for record, result in zip(part, out or [], strict=False)
                if not result.get("success")
            ]
            refused.sort(key=lambda pair: pair[1][0] == "ALL_OR_NONE_OPERATION_ROLLED_BACK")
            if refused and all_or_none:
                record, (code, message, _fields) = refused[0]
                raise RejectedError(
                    f"Salesforce refused the {what.split(maxsplit=1)[0]} of {record['attributes']['type']} "
                    f"{record.get('Id', '')}: {code}: {message}"
                )
        return results

    def count(self, from_where: str, include_deleted: bool = False) -> int:
        """How many records `SELECT COUNT() <from_where>` (the caller's FROM and WHERE) counts."""
        soql = f"SELECT COUNT() {from_where}"
        page: dict[str, Any] = self.call(lambda sf: sf.query(soql, include_deleted=include_deleted), kind="query")
        return int(page.get("totalSize") or 0)
