"""Which Salesforce fields matter for billing, and how they map to LogiSense.

The trigger rules of the original package (design.md section 1): an Account resyncs when Name,
Type, Status, Bill Group, AR Term, Parent, either invoice recipient, or a mapped custom field
changes; a Contact when a mapped field changes (Name, Title and Type by default, plus every field
a contact point is mapped from) or it moves to another account. Everything else is ignored.
"""

from __future__ import annotations

from shared.settings import Settings

# Compound fields arrive nested in CDC (`Name.FirstName`, `MailingAddress.City`); these are
# their flat sObject components, so a mapping may name either form.
COMPOUND_COMPONENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "Account": {
        "BillingAddress": ("BillingStreet", "BillingCity", "BillingState", "BillingPostalCode", "BillingCountry"),
        "ShippingAddress": ("ShippingStreet", "ShippingCity", "ShippingState", "ShippingPostalCode", "ShippingCountry"),
    },
    "Contact": {
        "Name": ("Salutation", "FirstName", "LastName"),
        "MailingAddress": ("MailingStreet", "MailingCity", "MailingState", "MailingPostalCode", "MailingCountry"),
        "OtherAddress": ("OtherStreet", "OtherCity", "OtherState", "OtherPostalCode", "OtherCountry"),
    },
}


def account_trigger_fields(settings: Settings) -> frozenset[str]:
    """Account fields whose change makes the account resync."""
    f = settings.salesforce.fields
    fields = {
        "Name",
        "Type",
        "ParentId",
        f.status,
        f.bill_group,
        f.ar_term,
        f.usage_invoice_recipient,
        f.subscription_invoice_recipient,
    }
    fields.update(ext.salesforce for ext in settings.mappings.account_extensions)
    return frozenset(_with_compound_parts("Account", fields))


def contact_trigger_fields(settings: Settings) -> frozenset[str]:
    """Contact fields whose change makes the contact (and so its account) resync."""
    fields = {"Name", "Title", "AccountId", settings.salesforce.fields.contact_type}
    for points in settings.mappings.contact_points.values():
        fields.update(field for field in points.values() if field != "Id")
    return frozenset(_with_compound_parts("Contact", fields))


def _with_compound_parts(entity: str, fields: set[str]) -> set[str]:
    """Add both the compound name and its flat components for every compound field named."""
    result = set(fields)
    for compound, parts in COMPOUND_COMPONENTS.get(entity, {}).items():
        if compound in fields or any(part in fields for part in parts):
            result.add(compound)
            result.update(parts)
    return result


def is_trigger(changed_field: str, triggers: frozenset[str]) -> bool:
    """True when a CDC changedFields entry (maybe `Compound.Component`) is a trigger field."""
    if changed_field in triggers:
        return True
    compound, _, _component = changed_field.partition(".")
    return bool(_component) and compound in triggers
