"""The write-back fields an org must have before opportunities are pushed or followed (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest

from services.opportunity.opportunities import LINE_WRITE_BACK, WRITE_BACK, check_fields
from shared.errors import ConfigError


class Describes:
    """The describe part of SalesforceRest: each object with the named fields."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields

    def describe(self, sobject: str) -> dict[str, Any]:
        return {"fields": [{"name": name} for name in self.fields[sobject]]}


def test_missing_write_back_fields_are_named_with_the_fix() -> None:
    """An org without the deployed fields is refused with every missing field and where to find them."""
    org = Describes({"Opportunity": ["Id", "LogiSense_Push_Status__c"], "OpportunityLineItem": ["Id"]})
    with pytest.raises(ConfigError) as refused:
        check_fields(org)  # type: ignore[arg-type]
    message = str(refused.value)
    for name in [n for n in WRITE_BACK if n != "LogiSense_Push_Status__c"]:
        assert f"Opportunity.{name}" in message
    for name in LINE_WRITE_BACK:
        assert f"OpportunityLineItem.{name}" in message
    assert "Opportunity.LogiSense_Push_Status__c" not in message
    assert "sfls import schema" in message


def test_an_org_with_the_fields_selects_them() -> None:
    """With every field deployed, the opportunity query selects the write-back fields (no currency field)."""
    org = Describes({"Opportunity": ["Id", *WRITE_BACK], "OpportunityLineItem": ["Id", *LINE_WRITE_BACK]})
    selected = check_fields(org)  # type: ignore[arg-type]
    assert set(WRITE_BACK) <= set(selected)
    assert "CurrencyIsoCode" not in selected
