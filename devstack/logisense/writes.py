"""Validation and writes: create, partial update and cascading delete, all errors gathered at once.

Error codes are LogiSense's documented ones: 13100000 a referenced id does not exist, 10400000 a
required field is missing, 11900000 a value is out of range or of the wrong format, and a final
2000 entry closes the list ("Errors found. Transaction rolled back."). Unknown custom fields get
10700000 (an emulator choice). The caller runs every write of one request in one Transaction and rolls it back
when any error was gathered, so a request is applied whole or not at all.

Price plan rules (HTTP 400): a second `Account/PricePlan` for an account, a reused `Account/ProductCode`
name within the owner, and a second price plan entry for the same (product code, package service) within
one plan answer 10800000 "already exists" (an emulator choice of code); an entry (`Package/Service/PricePlan`)
whose package is inactive, expired or not started yet, or whose package currency is not the price plan
account's currency, answers 11900000; a package frequency, package currency or product code that belongs
to another package (or account) answers 13100000, as for an id that does not exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devstack.logisense.resources import RESOURCES, REVERSE_REFERENCES, FieldSpec, ResourceSpec
from devstack.logisense.store import Store, Transaction

ERR_NOT_FOUND = 10100000
ERR_METHOD = 10200000
ERR_REQUIRED = 10400000
ERR_UNKNOWN_FIELD = 10700000
ERR_ALREADY_EXISTS = 10800000  # 400: only one allowed within its scope (an emulator choice of code)
ERR_CONFLICT = 10900000
ERR_INVALID = 10000000
ERR_FORMAT = 11900000
ERR_REFERENCE = 13100000
ERR_TRAILER = 2000
TRAILER = "Errors found. Transaction rolled back."

# Account references LogiSense fills from the record marked isDefault when a create leaves them out (INFERRED).
DEFAULTED_REFERENCES = {
    "Account": ("accountTypeId", "accountStatusTypeId", "billGroupId", "accountsReceivableTermsId", "currencyId")
}
OWNER_ID = 1


class ApiError(Exception):
    """An answer in LogiSense's error shape: HTTP status plus every (code, message) found."""

    def __init__(self, status: int, errors: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(message for _, message in errors))
        self.status = status
        self.errors = errors


@dataclass
class WriteOptions:
    """Behaviours the reference marks INFERRED, as switches with the inferred value as default."""

    accept_names_on_write: bool = True  # `accountTypeName` may stand in for `accountTypeId`
    reject_unknown_fields: bool = False  # unknown properties of non-extensible resources are ignored
    default_references: bool = True  # Account references default to the isDefault record


def pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


class Writer:
    """Validates bodies against the resource table and applies them inside a transaction."""

    def __init__(self, store: Store, options: WriteOptions) -> None:
        self.store = store
        self.options = options

    # -- create / update -----------------------------------------------------------------------
    def create(self, route: str, body: dict[str, Any], txn: Transaction) -> tuple[int | None, list[tuple[int, str]]]:
        spec = RESOURCES[route]
        clean, errors = self._clean(spec, body)
        record: dict[str, Any] = {f.name: (False if f.type == "bool" else None) for f in spec.fields}
        record.update(clean)
        if self.options.default_references:
            for name in DEFAULTED_REFERENCES.get(route, ()):
                if record.get(name) is None:
                    record[name] = self._default_id(spec.field(name))
        errors += self._check(spec, record, clean, None)
        if errors:
            return None, errors
        self._unique(spec, record, None)
        table = self.store.tables[route]
        identity = table.allocate()
        now = self.store.timestamp()
        record.update(identity=identity, created=now, updated=now)
        if "ownerId" in table.position:
            record["ownerId"] = OWNER_ID
        self._derive(route, record)
        txn.put(route, identity, record)
        return identity, []

    def update(
        self, route: str, identity: int, body: dict[str, Any], txn: Transaction, *, filters: list[str] | None = None
    ) -> list[tuple[int, str]]:
        spec = RESOURCES[route]
        current = self.store.tables[route].get(identity)
        if current is None:
            raise ApiError(404, [(ERR_NOT_FOUND, f"'{route}' ({identity}) was not found.")])
        if filters is not None:  # the UpdateRequest header restricts the applied fields
            body = {k: v for k, v in body.items() if k in filters}
        clean, errors = self._clean(spec, body)
        if route == "Account":
            # No split invoicers: a body naming only one of them moves both.
            if "invoicerAccountId" in clean and "usageInvoicerAccountId" not in clean:
                clean["usageInvoicerAccountId"] = clean["invoicerAccountId"]
            elif "usageInvoicerAccountId" in clean and "invoicerAccountId" not in clean:
                clean["invoicerAccountId"] = clean["usageInvoicerAccountId"]
        record = {**current, **clean}
        errors += self._check(spec, record, clean, identity)
        if errors:
            return errors
        self._unique(spec, record, identity)
        if clean:
            record["updated"] = self.store.timestamp()
        self._derive(route, record)
        txn.put(route, identity, record)
        return []

    # -- delete --------------------------------------------------------------------------------
    def delete(self, route: str, identity: int, txn: Transaction) -> list[dict[str, Any]]:
        if identity not in self.store.tables[route]:
            raise ApiError(404, [(ERR_NOT_FOUND, f"'{route}' ({identity}) was not found.")])
        items: list[dict[str, Any]] = [
            {"identity": identity, "action": "deleted", "dtoTypeKey": RESOURCES[route].dto_type_key}
        ]
        self._delete(route, identity, txn, items)
        return items

    def _delete(self, route: str, identity: int, txn: Transaction, items: list[dict[str, Any]]) -> None:
        txn.remove(route, identity)
        for child_route, ref in REVERSE_REFERENCES[route]:
            table = self.store.tables[child_route]
            children = sorted(table.lookup(ref.name, identity) or ())
            if not children:
                continue
            key = RESOURCES[child_route].dto_type_key
            if ref.on_delete == "restrict":
                raise ApiError(
                    409,
                    [(ERR_CONFLICT, f"'{route}' ({identity}) is used by {len(children)} '{child_route}' record(s).")],
                )
            for child in children:
                if ref.on_delete == "cascade":
                    items.append(
                        {"foreignKeyIdentity": identity, "identity": child, "action": "deleted", "dtoTypeKey": key}
                    )
                    self._delete(child_route, child, txn, items)
                else:
                    record = table.get(child)
                    if record is not None:
                        record[ref.name] = None
                        txn.put(child_route, child, record)
                        items.append({"lhsId": child, "rhsId": identity, "action": "detached", "dtoTypeKey": key})

    # -- validation ----------------------------------------------------------------------------
    def _clean(self, spec: ResourceSpec, body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[int, str]]]:
        """Writable fields coerced to their types; read-only ones dropped; unknown ones reported."""
        clean: dict[str, Any] = {}
        errors: list[tuple[int, str]] = []
        partners = {f.name_partner: f for f in spec.references if f.name_partner}
        custom = self.store.tables[spec.route].custom
        for key, value in body.items():
            field = spec.field(key)
            if key in spec.patch_children or (field is not None and field.read_only):
                continue
            if field is not None:
                ok, coerced = coerce(field, value)
                if ok:
                    clean[key] = coerced
                else:
                    errors.append((ERR_FORMAT, f"'{pascal(key)}' has an invalid value ({value!r}) for '{spec.route}'."))
            elif key in partners:
                ref = partners[key]
                if self._names_apply(ref, body, value):
                    self._resolve_name(spec, ref=ref, key=key, value=value, clean=clean, errors=errors)
            elif key in custom:
                if (
                    value is None
                    or isinstance(value, bool | int | float)
                    or (isinstance(value, str) and len(value) <= 255)
                ):
                    clean[key] = value
                else:
                    errors.append((ERR_FORMAT, f"Custom field '{key}' has an invalid value for '{spec.route}'."))
            elif spec.extensible:
                errors.append((ERR_UNKNOWN_FIELD, f"'{key}' is not a field or custom field of '{spec.route}'."))
            elif self.options.reject_unknown_fields:
                errors.append((ERR_UNKNOWN_FIELD, f"'{key}' is not a field of '{spec.route}'."))
        return clean, errors

    def _names_apply(self, ref: FieldSpec, body: dict[str, Any], value: Any) -> bool:
        """A writable reference given by name only (the partners of read-only references are ignored)."""
        return not ref.read_only and self.options.accept_names_on_write and ref.name not in body and value is not None

    def _resolve_name(
        self,
        spec: ResourceSpec,
        *,
        ref: FieldSpec,
        key: str,
        value: Any,
        clean: dict[str, Any],
        errors: list[tuple[int, str]],
    ) -> None:
        """`accountTypeName: "Customer"` in place of `accountTypeId` (INFERRED from public client code)."""
        found = self.store.tables[ref.ref or ""].lookup("name", value)
        if found:
            clean[ref.name] = min(found)
        else:
            errors.append(
                (ERR_REFERENCE, f"'{pascal(key)}' ({value!r}) does not exist in '{ref.ref}' for '{spec.route}'.")
            )

    def _check(
        self, spec: ResourceSpec, record: dict[str, Any], clean: dict[str, Any], identity: int | None
    ) -> list[tuple[int, str]]:
        errors: list[tuple[int, str]] = []
        route = spec.route
        for field in spec.fields:
            value = record.get(field.name)
            if field.required and (value is None or value == ""):
                errors.append((ERR_REQUIRED, f"'{pascal(field.name)}' is required for '{route}'."))
                continue
            if field.name not in clean or value is None:
                continue
            if field.ref is not None and value not in self.store.tables[field.ref]:
                errors.append(
                    (ERR_REFERENCE, f"'{pascal(field.name)}' ({value}) does not exist in '{field.ref}' for '{route}'.")
                )
            errors.extend(_range_errors(field, value, route))
        rule = _RULES.get(route)
        if rule is not None:
            errors.extend(rule(self.store, record, clean, identity))
        return errors

    def _unique(self, spec: ResourceSpec, record: dict[str, Any], identity: int | None) -> None:
        table = self.store.tables[spec.route]
        for name in spec.unique:
            holders = (table.lookup(name, record.get(name)) or set()) - {identity}
            if record.get(name) is not None and holders:
                raise ApiError(
                    409, [(ERR_CONFLICT, f"'{pascal(name)}' ({record[name]!r}) already exists in '{spec.route}'.")]
                )

    def _default_id(self, field: FieldSpec | None) -> int | None:
        if field is None or field.ref is None:
            return None
        table = self.store.tables[field.ref]
        if "isDefault" in table.position:
            position = table.position["isDefault"]
            for identity, row in table.rows.items():
                if row[position]:
                    return identity
        return next(table.ids(), None)

    def _derive(self, route: str, record: dict[str, Any]) -> None:
        if route == "Contact":
            record["name"] = " ".join(p for p in (record.get("firstName"), record.get("lastName")) if p) or None


_INVALID = (False, None)


def _as_int(value: Any) -> tuple[bool, Any]:
    if isinstance(value, int) and not isinstance(value, bool):
        return True, value
    if isinstance(value, float) and value.is_integer():
        return True, int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return True, int(value)
    return _INVALID


def _as_float(value: Any) -> tuple[bool, Any]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return _INVALID
    try:
        number = float(value)
    except ValueError:
        return _INVALID
    return (True, value if not isinstance(value, str) else number) if math.isfinite(number) else _INVALID


def _as_bool(value: Any) -> tuple[bool, Any]:
    if isinstance(value, bool):
        return True, value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return True, value.lower() == "true"
    return _INVALID


def _as_date(value: Any) -> tuple[bool, Any]:
    if not isinstance(value, str):
        return _INVALID
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return _INVALID
    return True, value


def _as_str(value: Any) -> tuple[bool, Any]:
    if isinstance(value, str):
        return True, value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True, str(value)
    return _INVALID


def _as_list(value: Any) -> tuple[bool, Any]:
    return (True, value) if isinstance(value, list) else _INVALID


_COERCERS: dict[str, Callable[[Any], tuple[bool, Any]]] = {
    "int": _as_int,
    "float": _as_float,
    "bool": _as_bool,
    "date": _as_date,
    "str": _as_str,
    "list": _as_list,
}


def coerce(field: FieldSpec, value: Any) -> tuple[bool, Any]:
    """The value in the field's type, as a lenient JSON.NET-style binder would accept it."""
    if value is None:
        return True, None
    return _COERCERS[field.type](value)


def _range_errors(field: FieldSpec, value: Any, route: str) -> list[tuple[int, str]]:
    label = f"'{pascal(field.name)}'"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if field.minimum is not None and value < field.minimum:
            return [(ERR_FORMAT, f"{label} must be at least {field.minimum:g} for '{route}'.")]
        if field.maximum is not None and value > field.maximum:
            return [(ERR_FORMAT, f"{label} must be at most {field.maximum:g} for '{route}'.")]
    if isinstance(value, str):
        if field.choices is not None and value not in field.choices:
            return [(ERR_FORMAT, f"{label} must be one of {', '.join(field.choices)} for '{route}'.")]
        if field.max_length is not None and len(value) > field.max_length:
            return [(ERR_FORMAT, f"{label} is longer than {field.max_length} characters for '{route}'.")]
    return []


def _account_rules(
    store: Store, record: dict[str, Any], clean: dict[str, Any], identity: int | None
) -> list[tuple[int, str]]:
    errors: list[tuple[int, str]] = []
    subscription, usage = record.get("invoicerAccountId"), record.get("usageInvoicerAccountId")
    if identity is None and (subscription is None) != (usage is None):
        record["invoicerAccountId"] = record["usageInvoicerAccountId"] = subscription or usage
    elif subscription != usage:
        errors.append(
            (
                ERR_FORMAT,
                f"'UsageInvoicerAccountId' ({usage}) must equal 'InvoicerAccountId' ({subscription}) for 'Account': "
                "usage and subscription invoices go to the same account.",
            )
        )
    parent = record.get("parentAccountId")
    if "parentAccountId" in clean and parent is not None and identity is not None:
        accounts = store.tables["Account"]
        seen: set[int] = set()
        node: Any = parent
        while node is not None and node not in seen:
            if node == identity:
                errors.append(
                    (ERR_FORMAT, f"'ParentAccountId' ({parent}) would make a cycle in the account hierarchy.")
                )
                break
            seen.add(node)
            node = accounts.value(node, "parentAccountId")
    return errors


def _contact_point_rules(
    store: Store, record: dict[str, Any], clean: dict[str, Any], identity: int | None
) -> list[tuple[int, str]]:
    errors: list[tuple[int, str]] = []
    contact_id: Any = record.get("contactId")
    type_id: Any = record.get("contactPointTypeId")
    contacts, types = store.tables["Contact"], store.tables["ContactPointType"]
    if contact_id in contacts and type_id in types:
        if contacts.value(contact_id, "contactTypeId") != types.value(type_id, "contactTypeId"):
            errors.append(
                (
                    ERR_REFERENCE,
                    f"'ContactPointTypeId' ({type_id}) does not exist in 'ContactPointType' for the contact type of "
                    f"'Contact' ({contact_id}).",
                )
            )
        elif not types.value(type_id, "allowMultiple"):
            points = store.tables["Contact/Point"]
            same = [p for p in points.lookup("contactId", contact_id) or () if p != identity]
            if any(points.value(p, "contactPointTypeId") == type_id for p in same):
                name = types.value(type_id, "name")
                errors.append((ERR_FORMAT, f"Contact ({contact_id}) already has a '{name}' point; it allows only one."))
    state_id: Any = record.get("stateId")
    country_id: Any = record.get("countryId")
    states = store.tables["State"]
    if state_id in states and country_id is not None and states.value(state_id, "countryId") != country_id:
        errors.append(
            (ERR_REFERENCE, f"'StateId' ({state_id}) does not exist in 'State' for 'Country' ({country_id}).")
        )
    return errors


def _moment(value: Any) -> datetime | None:
    """An ISO-8601 value as an aware datetime (UTC when it names no zone), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _price_plan_rules(
    store: Store, record: dict[str, Any], clean: dict[str, Any], identity: int | None
) -> list[tuple[int, str]]:
    errors: list[tuple[int, str]] = []
    account: Any = record.get("accountId")
    if account in store.tables["Account"]:
        others = (store.tables["Account/PricePlan"].lookup("accountId", account) or set()) - {identity}
        if others:
            errors.append(
                (
                    ERR_ALREADY_EXISTS,
                    f"'Account' ({account}) already has 'Account/PricePlan' ({min(others)}); "
                    "an account has one price plan.",
                )
            )
    start, end = _moment(record.get("start")), _moment(record.get("end"))
    if start is not None and end is not None and end < start:
        errors.append((ERR_FORMAT, "'End' must not be before 'Start' for 'Account/PricePlan'."))
    return errors


def _product_code_rules(
    store: Store, record: dict[str, Any], clean: dict[str, Any], identity: int | None
) -> list[tuple[int, str]]:
    name = record.get("name")
    if name is None or name == "":
        return []
    # Codes are unique at owner level; the emulator has one owner, so every code is in its scope.
    others = (store.tables["Account/ProductCode"].lookup("name", name) or set()) - {identity}
    if not others:
        return []
    return [
        (
            ERR_ALREADY_EXISTS,
            f"'Name' ({name!r}) already exists in 'Account/ProductCode' for 'Owner' ({OWNER_ID}); "
            "product codes are unique per owner.",
        )
    ]


_CHARGE_KEYS = {
    "recurringCharges": frozenset({"amount", "serviceStatusTypeId"}),
    "oneTimeCharges": frozenset({"amount"}),
}


def _charges(key: str, charges: list[Any]) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The charge rows with numeric amounts, or the errors found in them."""
    allowed = _CHARGE_KEYS[key]
    rows: list[dict[str, Any]] = []
    errors: list[tuple[int, str]] = []
    for index, charge in enumerate(charges):
        label = f"'{pascal(key)}[{index}]'"
        if not isinstance(charge, dict) or set(charge) - allowed:
            errors.append((ERR_FORMAT, f"{label} must be an object with {', '.join(sorted(allowed))}."))
            continue
        ok, amount = _as_float(charge.get("amount"))
        if not ok or float(amount) < 0:
            errors.append((ERR_FORMAT, f"{label} needs an 'amount' of at least 0 for 'Package/Service/PricePlan'."))
            continue
        row: dict[str, Any] = {"amount": float(amount)}
        if "serviceStatusTypeId" in charge:
            ok, status = _as_int(charge["serviceStatusTypeId"])
            if not ok and charge["serviceStatusTypeId"] is not None:
                errors.append((ERR_FORMAT, f"{label} has an invalid 'serviceStatusTypeId'."))
                continue
            row["serviceStatusTypeId"] = status if ok else None
        rows.append(row)
    return rows, errors


def _package_state(store: Store, package: int) -> str | None:
    """Why the package cannot be priced (inactive, expired, not started), or None when it is active."""
    packages = store.tables["Package"]
    now = datetime.fromtimestamp(store.now(), tz=UTC)
    start, expiry = _moment(packages.value(package, "start")), _moment(packages.value(package, "expiry"))
    if not packages.value(package, "isActive"):
        return "is inactive"
    if expiry is not None and expiry <= now:
        return "has expired"
    if start is not None and start > now:
        return "has not started yet"
    return None


def _package_service_price_plan_rules(
    store: Store, record: dict[str, Any], clean: dict[str, Any], identity: int | None
) -> list[tuple[int, str]]:
    errors: list[tuple[int, str]] = []
    tables = store.tables
    route = "Package/Service/PricePlan"
    package_service: Any = record.get("packageServiceId")
    package_currency: Any = record.get("packageCurrencyId")
    plan: Any = record.get("accountPricePlanId")
    code: Any = record.get("accountProductCodeId")
    package: Any = tables["Package/Service"].value(package_service, "packageId")
    linked = ("packageServiceId", "packageFrequencyId", "packageCurrencyId", "accountPricePlanId")
    relinked = identity is None or any(key in clean for key in linked)
    if package is not None and relinked:
        state = _package_state(store, package)
        if state is not None:
            name = tables["Package"].value(package, "name")
            errors.append((ERR_FORMAT, f"'Package' ({package}, {name!r}) {state}: only active packages can be priced."))
        for key, target in (("packageFrequencyId", "Package/Frequency"), ("packageCurrencyId", "Package/Currency")):
            value: Any = record.get(key)
            owner = tables[target].value(value, "packageId")
            if owner is not None and owner != package:
                errors.append(
                    (
                        ERR_REFERENCE,
                        f"'{pascal(key)}' ({value}) does not exist in '{target}' for 'Package' ({package}).",
                    )
                )
    currency: Any = tables["Package/Currency"].value(package_currency, "currencyId")
    account: Any = tables["Account/PricePlan"].value(plan, "accountId")
    if relinked and currency is not None and account is not None:
        account_currency = tables["Account"].value(account, "currencyId")
        if account_currency is not None and currency != account_currency:
            codes = tables["Currency"]
            errors.append(
                (
                    ERR_FORMAT,
                    f"'PackageCurrencyId' ({package_currency}) is in {codes.value(currency, 'code')} but 'Account' "
                    f"({account}) bills in {codes.value(account_currency, 'code')}: a price plan prices in the "
                    "account's currency only.",
                )
            )
    code_account = tables["Account/ProductCode"].value(code, "accountId")
    if account is not None and code_account is not None and code_account != account:
        errors.append(
            (
                ERR_REFERENCE,
                f"'AccountProductCodeId' ({code}) does not exist in 'Account/ProductCode' for 'Account' ({account}).",
            )
        )
    if plan is not None and package_service is not None:
        entries = tables[route]
        same = sorted((entries.lookup("accountPricePlanId", plan) or set()) - {identity})
        taken = [
            e
            for e in same
            if entries.value(e, "packageServiceId") == package_service
            and entries.value(e, "accountProductCodeId") == code
        ]
        if taken:
            errors.append(
                (
                    ERR_ALREADY_EXISTS,
                    f"'Account/PricePlan' ({plan}) already prices 'Package/Service' ({package_service}) with "
                    f"'AccountProductCodeId' ({code}) in '{route}' ({taken[0]}).",
                )
            )
    for key in _CHARGE_KEYS:
        if key in clean and clean[key] is not None:
            rows, found = _charges(key, clean[key])
            errors += found
            record[key] = rows
    return errors


_RULES = {
    "Account": _account_rules,
    "Contact/Point": _contact_point_rules,
    "Account/PricePlan": _price_plan_rules,
    "Account/ProductCode": _product_code_rules,
    "Package/Service/PricePlan": _package_service_price_plan_rules,
}
