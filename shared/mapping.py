"""Which Salesforce fields matter for billing, and how they map to LogiSense.

The trigger rules of the original Salesforce for LogiSense package: an Account resyncs when Name,
Type, Status, Bill Group, AR Term, Parent, either invoice recipient, or a mapped custom field
changes; a Contact when a mapped field changes (Name, Title and Type by default, plus every field
a contact point is mapped from) or it moves to another account. Everything else is ignored.
In a multi-currency org an Account's CurrencyIsoCode is a trigger field too, and is read and mapped
only there (`CURRENCY_FIELD`): the syncer learns from the Account describe at start whether the org has it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.compound import ADDRESS_PARTS, as_components, components, is_address, with_components
from shared.errors import ConfigError, MappingError
from shared.settings import Settings, check_column_name

CURRENCY_FIELD = "CurrencyIsoCode"  # on Account in a multi-currency org only


def org_currencies(describe: Mapping[str, Any]) -> list[str] | None:
    """The active ISO codes of an object's CurrencyIsoCode picklist, from its describe; None when the object has
    no CurrencyIsoCode (a single-currency org). The one test of "is this org multi-currency"."""
    found = next((f for f in describe.get("fields") or [] if f.get("name") == CURRENCY_FIELD), None)
    if found is None:
        return None
    return [str(v["value"]) for v in found.get("picklistValues") or [] if v.get("active", True)]


def synced_account_fields(settings: Settings) -> list[str]:
    """The Account fields that are synced: the trigger fields of the original package plus mapped ones."""
    f = settings.salesforce.fields
    fields = [
        "Name",
        "Type",
        "ParentId",
        f.status,
        f.bill_group,
        f.ar_term,
        f.usage_invoice_recipient,
        f.subscription_invoice_recipient,
    ]
    return fields + [ext.salesforce for ext in settings.mappings.account_extensions]


def account_trigger_fields(settings: Settings) -> frozenset[str]:
    """Account fields whose change makes the account resync (CurrencyIsoCode exists in multi-currency orgs only)."""
    return frozenset(with_components("Account", [*synced_account_fields(settings), CURRENCY_FIELD]))


def contact_trigger_fields(settings: Settings) -> frozenset[str]:
    """Contact fields whose change makes the contact (and so its account) resync."""
    fields = {"Name", "Title", "AccountId", settings.salesforce.fields.contact_type}
    for points in settings.mappings.contact_points.values():
        fields.update(field for field in points.values() if field != "Id")
    return frozenset(with_components("Contact", fields))


# The fields whose change can change what a push writes (or whether the opportunity qualifies). Our own
# write-back fields are not among them: those writes are tagged and dropped as echoes anyway.
OPPORTUNITY_TRIGGER_FIELDS = frozenset(
    {"StageName", "IsWon", "IsClosed", "Pricebook2Id", "AccountId", CURRENCY_FIELD, "CloseDate", "Amount"}
)
LINE_TRIGGER_FIELDS = frozenset(
    {
        "Quantity",
        "UnitPrice",
        "TotalPrice",
        "ListPrice",
        "Discount",
        "PricebookEntryId",
        "Product2Id",
        "Account_Product_Code_Name__c",
    }
)


# --- Salesforce -> LogiSense field mapping ---------------------------------------------------------
#
# The syncer reads the current Salesforce state of an account and its contacts and maps it to
# the LogiSense bodies below. Reference names (Type, Status, Bill Group, AR Term, contact type,
# country, state) resolve to LogiSense ids through a Lookup; a name LogiSense does not know is
# a MappingError (the account is dead-lettered with that reason). A blank reference leaves the
# LogiSense value as it is. Parent and invoice recipients are Salesforce ids here; the syncer
# turns them into LogiSense ids once those accounts exist there.


class Lookup(Protocol):
    """Resolves a reference name of `kind` to its LogiSense id, raising MappingError when unknown."""

    def __call__(self, kind: str, name: str, *, within: int | None = None) -> int: ...


@dataclass(frozen=True)
class MappedAccount:
    """The LogiSense Account body for one Salesforce account, plus the accounts it depends on."""

    sfdc_id: str
    body: dict[str, Any]
    parent_sfdc_id: str | None
    invoicer_sfdc_id: str | None
    currency: str | None = None  # the ISO code of a multi-currency org's account
    currency_id: int | None = None  # its LogiSense currency

    @property
    def dependencies(self) -> tuple[str, ...]:
        found = {self.parent_sfdc_id, self.invoicer_sfdc_id} - {None, self.sfdc_id}
        return tuple(sorted(d for d in found if d))


@dataclass(frozen=True)
class MappedContact:
    """A LogiSense Contact body and its contact points (point name -> body fields)."""

    sfdc_id: str
    contact_type_id: int
    body: dict[str, Any]
    points: dict[str, dict[str, Any]] = field(default_factory=dict)


def account_query_fields(settings: Settings, *, multi_currency: bool = False) -> tuple[str, ...]:
    """The Account fields the mapping reads, and nothing else (CurrencyIsoCode only in a multi-currency org)."""
    fields = as_components("Account", ["Id", *synced_account_fields(settings)])
    return (*fields, CURRENCY_FIELD) if multi_currency else fields


def contact_query_fields(settings: Settings) -> tuple[str, ...]:
    """The Contact fields the mapping reads (compound fields as their components)."""
    names = ["Id", "AccountId", "FirstName", "LastName", "Title", settings.salesforce.fields.contact_type]
    for points in settings.mappings.contact_points.values():
        names += points.values()
    return as_components("Contact", names, contact_name=("FirstName", "LastName"))


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def map_account(
    record: Mapping[str, Any], settings: Settings, lookup: Lookup, *, multi_currency: bool = False
) -> MappedAccount:
    """Map a Salesforce Account record to the LogiSense Account body (MappingError when it cannot).

    In a multi-currency org the account's CurrencyIsoCode resolves to a LogiSense currency (by ISO code or
    name), kept beside the body: the syncer sets it on create only, since LogiSense cannot change it.
    """
    f = settings.salesforce.fields
    sfdc_id = _text(record.get("Id"))
    body: dict[str, Any] = {"name": _text(record.get("Name")), settings.logisense.link_field: sfdc_id}
    if not body["name"]:
        raise MappingError(f"Salesforce account {sfdc_id} has no Name; LogiSense requires one")
    for sf_field, kind, target in (
        ("Type", "account_type", "accountTypeId"),
        (f.status, "account_status_type", "accountStatusTypeId"),
        (f.bill_group, "bill_group", "billGroupId"),
        (f.ar_term, "ar_term", "accountsReceivableTermsId"),
    ):
        name = _text(record.get(sf_field))
        if name:
            body[target] = lookup(kind, name)
    usage = _text(record.get(f.usage_invoice_recipient)) or None
    subscription = _text(record.get(f.subscription_invoice_recipient)) or None
    if usage != subscription:
        raise MappingError(
            f"Salesforce account {sfdc_id} has usage invoice recipient {usage or '(none)'} and subscription "
            f"invoice recipient {subscription or '(none)'}; LogiSense allows no split between them: set both "
            f"{f.usage_invoice_recipient} and {f.subscription_invoice_recipient} to the same account"
        )
    for ext in settings.mappings.account_extensions:
        body[ext.logisense] = record.get(ext.salesforce)
    parent = _text(record.get("ParentId")) or None
    currency = _text(record.get(CURRENCY_FIELD)) if multi_currency else ""
    return MappedAccount(
        sfdc_id=sfdc_id,
        body=body,
        parent_sfdc_id=parent,
        invoicer_sfdc_id=usage,
        currency=currency or None,
        currency_id=_currency_id(sfdc_id, currency, lookup) if currency else None,
    )


def _currency_id(sfdc_id: str, code: str, lookup: Lookup) -> int:
    try:
        return lookup("currency", code)
    except MappingError as exc:
        raise MappingError(
            f"Salesforce account {sfdc_id} has {CURRENCY_FIELD} {code!r}, which matches no LogiSense Currency by "
            f"ISO code or name; add a Currency with code {code!r} in LogiSense and replay the dead letter, or "
            "give the account a currency LogiSense knows"
        ) from exc


def map_contact(
    record: Mapping[str, Any], settings: Settings, lookup: Lookup, *, default_contact_type: str
) -> MappedContact:
    """Map a Salesforce Contact to a LogiSense Contact and the contact points of its contact type."""
    sfdc_id = _text(record.get("Id"))
    type_name = _text(record.get(settings.salesforce.fields.contact_type)) or default_contact_type
    type_id = lookup("contact_type", type_name)
    body: dict[str, Any] = {
        "contactTypeId": type_id,
        "firstName": _text(record.get("FirstName")),
        "lastName": _text(record.get("LastName")),
        "title": _text(record.get("Title")),
    }
    link = settings.logisense.link_field
    points: dict[str, dict[str, Any]] = {link: {"value": sfdc_id}}
    for point, sf_field in _points_of_type(settings.mappings.contact_points, type_name).items():
        if point == link:
            continue
        if is_address("Contact", sf_field):
            address = _address(record, sf_field, lookup, sfdc_id)
            if address:
                points[point] = address
        else:
            value = _text(record.get(sf_field))
            if value:
                points[point] = {"value": value}
    return MappedContact(sfdc_id=sfdc_id, contact_type_id=type_id, body=body, points=points)


def _points_of_type(contact_points: Mapping[str, Mapping[str, str]], type_name: str) -> Mapping[str, str]:
    """The Contact Point Mapping of a contact type, matched like LogiSense names: case and spacing aside."""
    wanted = " ".join(type_name.split()).casefold()
    for name, points in contact_points.items():
        if " ".join(name.split()).casefold() == wanted:
            return points
    return {}


def _address(record: Mapping[str, Any], compound: str, lookup: Lookup, sfdc_id: str) -> dict[str, Any]:
    names = dict(zip(ADDRESS_PARTS, components("Contact", compound), strict=True))  # City -> MailingCity, ...
    parts = {part: _text(record.get(name)) for part, name in names.items()}
    if not any(parts.values()):
        return {}
    body: dict[str, Any] = {"address1": parts["Street"], "city": parts["City"], "zipCode": parts["PostalCode"]}
    if parts["Country"]:
        country_id = lookup("country", parts["Country"])
        body["countryId"] = country_id
        if parts["State"]:
            body["stateId"] = lookup("state", parts["State"], within=country_id)
    elif parts["State"]:
        raise MappingError(f"Salesforce contact {sfdc_id}: {names['State']} is set without {names['Country']}")
    return body


# --- mapping validation (start-up) -----------------------------------------------------------------


def mapping_problems(
    settings: Settings,
    *,
    contact_point_types: Mapping[str, Iterable[str]] | None = None,
    account_fields: Iterable[str] | None = None,
    contact_fields: Iterable[str] | None = None,
) -> list[str]:
    """Every bad mapping, each with its fix. Sources not given (LogiSense types, describes) are skipped.

    contact_point_types: LogiSense contact type name -> its contact point type names.
    account_fields / contact_fields: field names of the Salesforce describe of Account / Contact.
    """
    problems = _column_problems(settings)
    if contact_point_types is not None:
        problems += _contact_point_problems(settings, {k: set(v) for k, v in contact_point_types.items()})
    if account_fields is not None:
        have = set(account_fields)
        problems += [
            f"Salesforce Account has no field {name!r} ({_where_account(settings, name)}); "
            "fix the field's API name or add the field in Salesforce"
            for name in account_query_fields(settings)
            if name not in have
        ]
    if contact_fields is not None:
        have = set(contact_fields)
        problems += [
            f"Salesforce Contact has no field {name!r} ({_where_contact(settings, name)}); "
            "fix the field's API name or add the field in Salesforce"
            for name in contact_query_fields(settings)
            if name not in have
        ]
    return problems


def _column_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    link = settings.logisense.link_field
    for i, ext in enumerate(settings.mappings.account_extensions):
        where = f"mappings.account_extensions[{i}] ({ext.salesforce} -> {ext.logisense})"
        problems += _column_problem(where, ext.logisense)
        if ext.logisense == link:
            problems.append(
                f"{where}: {link!r} is the link field holding the Salesforce id; map the extension to another "
                "Column Name"
            )
    for type_name, points in settings.mappings.contact_points.items():
        for point, sf_field in points.items():
            problems += _column_problem(f"mappings.contact_points.{type_name}.{point}", point)
            if point == link and sf_field != "Id":
                problems.append(
                    f"mappings.contact_points.{type_name}.{point}: the {link!r} point holds the Salesforce id; "
                    f"map it to Id (got {sf_field!r})"
                )
    return problems


def _contact_point_problems(settings: Settings, known: dict[str, set[str]]) -> list[str]:
    problems: list[str] = []
    link = settings.logisense.link_field
    mapped_types = settings.mappings.contact_points
    for type_name, points in mapped_types.items():
        if type_name not in known:
            problems.append(
                f"mappings.contact_points.{type_name}: LogiSense has no contact type {type_name!r}; "
                f"use one of {sorted(known)} or import data first"
            )
            continue
        problems += [
            f"mappings.contact_points.{type_name}.{point}: contact type {type_name!r} has no contact point "
            f"{point!r} in LogiSense; use one of {sorted(known[type_name])}"
            for point in points
            if point not in known[type_name]
        ]
    for type_name, point_names in sorted(known.items()):
        missing = sorted(point_names - set(mapped_types.get(type_name, {})) - {link})
        if missing:
            example = ", ".join(f"{p}: <Salesforce Contact field>" for p in missing)
            problems.append(
                f"mappings.contact_points.{type_name}: contact points {missing} are not mapped; every contact "
                f"point of every contact type must be mapped before any account syncs: add {{{example}}}"
            )
    return problems


def check_mappings(settings: Settings, **sources: Any) -> None:
    """Raise one ConfigError naming every bad mapping and its fix."""
    problems = mapping_problems(settings, **sources)
    if problems:
        raise ConfigError("invalid mappings:\n  " + "\n  ".join(problems))


def _column_problem(where: str, column: str) -> list[str]:
    try:
        check_column_name(column)
    except ValueError as exc:
        return [f"{where}: {exc}"]
    return []


def _where_account(settings: Settings, name: str) -> str:
    for ext in settings.mappings.account_extensions:
        if ext.salesforce == name:
            return f"mappings.account_extensions ({name} -> {ext.logisense})"
    for key, value in settings.salesforce.fields.model_dump().items():
        if value == name:
            return f"salesforce.fields.{key}"
    return "a standard field sfls reads"


def _where_contact(settings: Settings, name: str) -> str:
    if name == settings.salesforce.fields.contact_type:
        return "salesforce.fields.contact_type"
    for type_name, points in settings.mappings.contact_points.items():
        for point, sf_field in points.items():
            if name == sf_field or name in components("Contact", sf_field):
                return f"mappings.contact_points.{type_name}.{point}"
    return "a standard field sfls reads"
