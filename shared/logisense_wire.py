"""LogiSense's JSON, apart from the client that sends it: search queries written, answers read.

- A search is `{"search": [conditions], "orderBy": [...]}`; conditions are ANDed.
- A list answers `items`, a page `pagedResults` (`items`, `totalCount`), a write `results.items`
  whose first entry carries the instance (or only its identity).
- An answer maps onto shared.errors: 429 (honouring Retry-After) and 5xx are TransientError; 401 is
  AuthExpiredError; 400 is RejectedError with LogiSense's messages joined; other 4xx (404, 405, 409)
  are PermanentError; a 2xx without a JSON object is PermanentError.

Custom fields are top-level properties keyed by their Column Name, so
`search("Account", [Condition("sfdcid", "eq", sf_id)])` finds an account by its Salesforce id.

A package is on sale when it is active, has started and has not expired (`package_not_on_sale`): only
such a package gets price book entries and account price plan entries.
"""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.errors import AuthExpiredError, MappingError, PermanentError, RejectedError, TransientError

EXCERPT_CHARS = 500
TRAILER_CODE = 2000  # LogiSense's closing "Errors found. Transaction rolled back." entry


@dataclass(frozen=True)
class Condition:
    """One search condition; LogiSense ANDs them. Operators: eq notEq lt ltEq gt gtEq (and in, like, isNull)."""

    name: str
    operator: str = "eq"
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "operator": self.operator, "value": self.value}


ConditionLike = Condition | tuple[str, str, Any] | Mapping[str, Any]
OrderLike = tuple[str, str] | Mapping[str, Any] | str


def condition_json(condition: ConditionLike) -> dict[str, Any]:
    """A Condition, a (name, operator, value) tuple or a {name, operator, value} dict as search JSON."""
    if isinstance(condition, Condition):
        return condition.to_json()
    if isinstance(condition, Mapping):
        return {
            "name": str(condition["name"]),
            "operator": condition.get("operator", "eq"),
            "value": condition.get("value"),
        }
    name, operator, value = condition
    return {"name": name, "operator": operator, "value": value}


def order_json(order: OrderLike) -> dict[str, Any]:
    """`("name", "desc")`, `{"name": .., "direction": ..}`, or `"name"` / `"-name"` as orderBy JSON."""
    if isinstance(order, str):
        return {"name": order.lstrip("-"), "direction": "desc" if order.startswith("-") else "asc"}
    if isinstance(order, Mapping):
        return {"name": str(order["name"]), "direction": str(order.get("direction", "asc"))}
    return {"name": order[0], "direction": order[1]}


def query_json(conditions: Sequence[ConditionLike], order_by: Sequence[OrderLike] | None) -> dict[str, Any]:
    """The `query` of a search: its conditions and, when given, its order."""
    query: dict[str, Any] = {"search": [condition_json(c) for c in conditions]}
    if order_by:
        query["orderBy"] = [order_json(o) for o in order_by]
    return query


async def pages(fetch: Callable[[int], Awaitable[dict[str, Any]]], size: int) -> AsyncIterator[dict[str, Any]]:
    """Every item of the pages `fetch(1)`, `fetch(2)`, ... until a short page or `totalCount` items."""
    page = 1
    seen = 0
    while True:
        body = await fetch(page)
        results = body.get("pagedResults") or {}
        items = list(results.get("items") or [])
        for item in items:
            yield item
        seen += len(items)
        total = results.get("totalCount")
        if len(items) < size or (isinstance(total, int) and seen >= total):
            return
        page += 1


def first_instance(answer: dict[str, Any]) -> dict[str, Any]:
    """The instance a write answered (or just its identity)."""
    items = (answer.get("results") or {}).get("items") or []
    if not items or not isinstance(items[0], dict):
        raise PermanentError("LogiSense answered a write without a result item")
    first = items[0]
    instance = first.get("instance")
    if isinstance(instance, dict):
        return instance
    return {"identity": first.get("identity")}


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def error_messages(body: Any) -> list[str]:
    """The readable messages of a LogiSense error body, without the closing roll-back entry."""
    if not isinstance(body, dict):
        return []
    messages = [
        str(entry.get("message"))
        for entry in body.get("errors") or ()
        if isinstance(entry, dict) and entry.get("message") and entry.get("code") != TRAILER_CODE
    ]
    if not messages and body.get("message"):
        messages.append(str(body["message"]))
    if not messages and body.get("error"):
        messages.append(f"{body['error']}: {body.get('error_description', '')}".rstrip(": "))
    return messages


def decode(response: httpx.Response, where: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; any other answer raised as its sfls error (`where` names the call)."""
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if 200 <= status < 300:
        if not isinstance(body, dict):
            raise PermanentError(f"{where}: HTTP {status} without a JSON object", status=status)
        return body
    excerpt = response.text[:EXCERPT_CHARS]
    detail = "; ".join(error_messages(body)) or (response.reason_phrase or "")
    if status == 401:
        raise AuthExpiredError(f"{where}: HTTP 401 (access token refused)", status=status)
    if status == 429 or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        raise TransientError(f"{where}: HTTP {status}: {detail}", status=status, retry_after=retry_after)
    if status == 400:
        raise RejectedError(f"{where} rejected: {detail}", status=status, response_excerpt=excerpt)
    raise PermanentError(f"{where}: HTTP {status}: {detail}", status=status, response_excerpt=excerpt)


def _moment(value: Any) -> datetime | None:
    """A LogiSense date (ISO-8601, `Z` or an offset; naive means UTC); None when absent."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MappingError(f"a package's start or expiry {value!r} is not an ISO-8601 date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def package_not_on_sale(package: Mapping[str, Any], now: datetime) -> str:
    """Why a LogiSense package is not on sale at `now` ("is inactive", "has expired", "has not started yet"), or ""."""
    start, expiry = _moment(package.get("start")), _moment(package.get("expiry"))
    if not package.get("isActive"):
        return "is inactive"
    if expiry is not None and expiry <= now:
        return "has expired"
    if start is not None and start > now:
        return "has not started yet"
    return ""
