"""Primitives every part of the Salesforce emulator shares: API errors, record ids, timestamps, values.

Errors are raised as `ApiError` anywhere below the HTTP layer and rendered in Salesforce's own
JSON list shape (`[{"message": ..., "errorCode": ..., "fields": [...]}]`) by the REST layer.
Ids are 18-character Salesforce ids (15 case-sensitive characters plus the 3-character
case-encoding suffix), generated from a per-process counter so that they are unique and
deterministic for a given sequence of calls.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

ID_PATTERN = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_counter = itertools.count(1)


@dataclass
class ApiError(Exception):
    """A Salesforce API error: HTTP status, errorCode and message (and the fields it concerns)."""

    status: int
    code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def body(self) -> list[dict[str, Any]]:
        """The REST error body: a list with one error."""
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields:
            item["fields"] = self.fields
        return [item]

    def collection_error(self) -> dict[str, Any]:
        """The error as sObject Collections report it (statusCode, not errorCode)."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def to18(record_id: str) -> str:
    """The 18-character form of a 15- or 18-character id (the suffix encodes the letter case)."""
    if len(record_id) == 18:
        return record_id
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(record_id[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _SUFFIX[bits]
    return record_id + suffix


def is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(ID_PATTERN.match(value))


def new_id(prefix: str) -> str:
    """A fresh 18-character id with the object's key prefix."""
    number = next(_counter)
    digits = ""
    for _ in range(9):
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    return to18(f"{prefix}5g0{digits}")


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def format_datetime(epoch_ms: int) -> str:
    """REST datetime format: 2024-04-09T20:26:27.000+0000 (sorts lexicographically)."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}+0000"


def cdc_datetime(value: str) -> str:
    """CometD change events carry datetimes as 2024-04-09T20:26:27.000Z."""
    return value[:-5] + "Z" if value.endswith("+0000") else value


def parse_datetime(text: str) -> str | None:
    """Normalise an ISO datetime (Z, +hh:mm, +hhmm, optional fraction) to the REST format; None if invalid."""
    match = re.fullmatch(
        r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})?", text.strip()
    )
    if not match:
        return None
    day, clock, fraction, zone = match.groups()
    if len(clock) == 5:
        clock += ":00"
    zone = zone or "Z"
    if zone != "Z" and ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{(fraction or '.0')[:7]}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:
        return None
    epoch_ms = int(moment.timestamp() * 1000)
    return format_datetime(epoch_ms)


def parse_date(text: str) -> str | None:
    try:
        return date.fromisoformat(text.strip()[:10]).isoformat() if len(text.strip()) in (10,) else None
    except ValueError:
        return None


_TEXT = {"string", "textarea", "picklist", "email", "phone", "url"}


def _text(value: Any) -> Any:
    if isinstance(value, bool | dict | list):
        raise TypeError
    return str(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise TypeError


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise TypeError
    return value if isinstance(value, int) else float(value)


def _parsed(parser: Any) -> Any:
    def convert(value: Any) -> Any:
        parsed = parser(value) if isinstance(value, str) else None
        if parsed is None:
            raise TypeError
        return parsed

    return convert


_CONVERTERS = {
    **dict.fromkeys(_TEXT, _text),
    "boolean": _boolean,
    "double": _number,
    "currency": _number,
    "int": lambda value: int(_number(value)),
    "date": _parsed(parse_date),
    "datetime": _parsed(parse_datetime),
}


def coerce(field_name: str, kind: str, value: Any, length: int) -> Any:
    """A JSON value checked and normalised for a field type, or ApiError(JSON_PARSER_ERROR/...)."""
    if value is None:
        return None
    if kind in {"reference", "id"}:
        if not is_id(value):
            raise ApiError(400, "MALFORMED_ID", f"{field_name}: id value of incorrect type: {value}", [field_name])
        return to18(value)
    bad = ApiError(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from value {value!r} or request may be missing a required field",
        [field_name],
    )
    converter = _CONVERTERS.get(kind)
    if converter is None:
        raise bad
    try:
        converted = converter(value)
    except (TypeError, ValueError):
        raise bad from None
    if kind in _TEXT and len(converted) > length:
        raise ApiError(
            400,
            "STRING_TOO_LONG",
            f"{field_name}: data value too large: {converted[:40]}... (max length={length})",
            [field_name],
        )
    return converted
