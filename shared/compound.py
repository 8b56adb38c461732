"""Salesforce compound fields: which fields are compound, their components, and the names of both forms.

A compound field is one value made of several sObject fields: an address (`BillingAddress` of
`BillingStreet`, `BillingCity`, ...) or a Contact's `Name` (`Salutation`, `FirstName`, `LastName`).
CDC delivers it nested (`"BillingAddress": {"City": ...}`) and names a changed component
`BillingAddress.City` in `changedFields`; the REST and SOQL APIs use the flat component names. Every
rule about the two forms lives here: the listener flattens CDC bodies with it, the mapping reads and
triggers on either form with it.
"""

from __future__ import annotations

from collections.abc import Iterable

ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country")

# The compound fields sfls can sync, by sObject, with their flat components.
COMPOUND_COMPONENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "Account": {
        address: tuple(address.removesuffix("Address") + part for part in ADDRESS_PARTS)
        for address in ("BillingAddress", "ShippingAddress")
    },
    "Contact": {
        "Name": ("Salutation", "FirstName", "LastName"),
        **{
            address: tuple(address.removesuffix("Address") + part for part in ADDRESS_PARTS)
            for address in ("MailingAddress", "OtherAddress")
        },
    },
}


def components(sobject: str, name: str) -> tuple[str, ...]:
    """The flat components of compound field `name`, or () when it is not one sfls knows."""
    return COMPOUND_COMPONENTS.get(sobject, {}).get(name, ())


def is_address(sobject: str, name: str) -> bool:
    """True when `name` is a compound address field of `sobject`."""
    return name.endswith("Address") and bool(components(sobject, name))


def is_nested(sobject: str, name: str) -> bool:
    """True when CDC may deliver field `name` of `sobject` nested (any address, or a known compound)."""
    return name.endswith("Address") or name in COMPOUND_COMPONENTS.get(sobject, {})


def component_name(sobject: str, compound: str, component: str) -> str:
    """The flat name of a CDC component: (`BillingAddress`, `City`) -> `BillingCity`, Contact Name -> `LastName`."""
    if compound.endswith("Address"):
        return compound.removesuffix("Address") + component
    if compound in COMPOUND_COMPONENTS.get(sobject, {}):
        return component
    return f"{compound}.{component}"


def flat_field_name(sobject: str, name: str) -> str:
    """`BillingAddress.City` -> `BillingCity`, `Name.LastName` -> `LastName`; other names unchanged."""
    compound, _, component = name.partition(".")
    return component_name(sobject, compound, component) if component else name


def with_components(sobject: str, fields: Iterable[str]) -> set[str]:
    """`fields` plus, for every compound field named by itself or by a component, the compound and all its parts."""
    result = set(fields)
    for compound, parts in COMPOUND_COMPONENTS.get(sobject, {}).items():
        if compound in result or any(part in result for part in parts):
            result.add(compound)
            result.update(parts)
    return result


def as_components(sobject: str, names: Iterable[str], *, contact_name: tuple[str, ...] = ()) -> tuple[str, ...]:
    """`names` with each compound field replaced by its components, in order, without repeats.

    `contact_name` overrides the components of the Contact `Name` (a query may want only some of them).
    """
    result: list[str] = []
    for name in names:
        if sobject == "Contact" and name == "Name" and contact_name:
            parts = contact_name
        else:
            parts = components(sobject, name) or (name,)
        result.extend(part for part in parts if part not in result)
    return tuple(result)


def names_any(changed_field: str, fields: frozenset[str]) -> bool:
    """True when a CDC `changedFields` entry (maybe `Compound.Component`) names one of `fields`."""
    if changed_field in fields:
        return True
    compound, _, component = changed_field.partition(".")
    return bool(component) and compound in fields
