"""Reference names to LogiSense ids: a cache filled from LogiSense's reference resources.

Salesforce holds names (Type "Customer", Status "Active", AR Term "Net 30", country "CA"); LogiSense
wants ids. The cache lists each reference resource once and refreshes when it is older than
`max_age_seconds` at the start of a batch, so a type added in LogiSense is picked up without a
restart; after a name was missing it refreshes sooner (`miss_refresh_seconds`), so replaying a dead
letter right after adding the missing bill group or type in LogiSense delivers it. Names match
case-insensitively; countries also by ISO code, states by code or name within their country. An
unknown name is a MappingError: the account is dead-lettered with it. `multi_currency` is not
reference data but the Salesforce org's shape, set once at start from the Account describe: whether
accounts carry a CurrencyIsoCode to map (services/syncer/app.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.errors import MappingError

RESOURCES = {
    "account_type": ("AccountType", "Account Type"),
    "account_status_type": ("Account/StatusType", "Account Status Type"),
    "bill_group": ("BillGroup", "Bill Group"),
    "ar_term": ("AccountsReceivable/Terms", "AR Term"),
    "currency": ("Currency", "Currency"),
    "contact_type": ("ContactType", "Contact Type"),
    "country": ("Country", "Country"),
    "state": ("State", "State"),
}


class Lister(Protocol):
    async def list(self, resource: str) -> list[dict[str, Any]]: ...


def _norm(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass
class References:
    """Name -> id per kind, and the contact point types of each contact type."""

    max_age_seconds: float = 300.0
    miss_refresh_seconds: float = 10.0
    missed: bool = False  # a lookup failed since the last load
    names: dict[str, dict[str, int]] = field(default_factory=dict)
    states: dict[tuple[int, str], int] = field(default_factory=dict)
    defaults: dict[str, int] = field(default_factory=dict)
    point_types: dict[tuple[int, str], int] = field(default_factory=dict)  # (contact type id, point name)
    point_names: dict[int, str] = field(default_factory=dict)  # point type id -> name
    contact_type_names: dict[int, str] = field(default_factory=dict)
    currency_codes: dict[int, str] = field(default_factory=dict)  # currency id -> ISO code (or name)
    multi_currency: bool = False  # the Salesforce org has Account.CurrencyIsoCode
    loaded_at: float | None = None
    loads: int = 0

    async def load(self, client: Lister) -> None:
        names: dict[str, dict[str, int]] = {}
        defaults: dict[str, int] = {}
        codes: dict[int, str] = {}
        for kind, (resource, _label) in RESOURCES.items():
            if kind == "state":
                continue
            table: dict[str, int] = {}
            for item in await client.list(resource):
                identity = int(item["identity"])
                if item.get("name"):
                    table.setdefault(_norm(str(item["name"])), identity)
                for code_field in ("countryCode", "code"):
                    if kind in ("country", "currency") and item.get(code_field):
                        table.setdefault(_norm(str(item[code_field])), identity)
                if item.get("isDefault") and kind not in defaults:
                    defaults[kind] = identity
                if kind == "currency":
                    codes[identity] = str(item.get("code") or item.get("name") or identity)
            names[kind] = table
        states: dict[tuple[int, str], int] = {}
        for item in await client.list("State"):
            country = int(item["countryId"])
            for key in ("name", "code"):
                if item.get(key):
                    states.setdefault((country, _norm(str(item[key]))), int(item["identity"]))
        contact_types = {int(i["identity"]): str(i["name"]) for i in await client.list("ContactType")}
        point_types: dict[tuple[int, str], int] = {}
        point_names: dict[int, str] = {}
        for item in await client.list("ContactPointType"):
            point_types[(int(item["contactTypeId"]), str(item["name"]))] = int(item["identity"])
            point_names[int(item["identity"])] = str(item["name"])
        self.names, self.states, self.defaults, self.currency_codes = names, states, defaults, codes
        self.point_types, self.point_names, self.contact_type_names = point_types, point_names, contact_types
        self.loaded_at = time.monotonic()
        self.loads += 1
        self.missed = False

    async def refresh_if_stale(self, client: Lister) -> None:
        age = None if self.loaded_at is None else time.monotonic() - self.loaded_at
        limit = self.miss_refresh_seconds if self.missed else self.max_age_seconds
        if age is None or age > limit:
            await self.load(client)

    def __call__(self, kind: str, name: str, *, within: int | None = None) -> int:
        """The LogiSense id of reference `name` (the shared.mapping.Lookup protocol)."""
        if kind == "state":
            found = self.states.get((within or 0, _norm(name)))
        else:
            found = self.names.get(kind, {}).get(_norm(name))
        if found is None:
            self.missed = True
            resource, label = RESOURCES[kind]
            raise MappingError(
                f"{label} {name!r} does not exist in LogiSense ({resource}); add it there "
                f"(and run `sfls import data`) or correct the Salesforce value"
            )
        return found

    def default(self, kind: str) -> int | None:
        return self.defaults.get(kind)

    def currency_code(self, identity: int) -> str:
        """The ISO code of a LogiSense currency, for messages."""
        return self.currency_codes.get(identity, f"currency {identity}")

    def unknown_currencies(self, codes: list[str]) -> list[str]:
        """The ISO codes among `codes` that match no LogiSense currency."""
        known = self.names.get("currency", {})
        return [code for code in codes if _norm(code) not in known]

    def point_type(self, contact_type_id: int, point: str) -> int | None:
        return self.point_types.get((contact_type_id, point))

    def link_point_types(self, link_field: str) -> list[int]:
        """Ids of the link point (`sfdcid`) of every contact type."""
        return sorted(i for (_ct, name), i in self.point_types.items() if name == link_field)

    def points_by_contact_type(self) -> dict[str, list[str]]:
        """Contact type name -> its contact point names (for the start-up mapping check)."""
        result: dict[str, list[str]] = {name: [] for name in self.contact_type_names.values()}
        for (type_id, point), _identity in sorted(self.point_types.items()):
            name = self.contact_type_names.get(type_id)
            if name is not None:
                result[name].append(point)
        return result
