"""Which CDC changes the listener follows: its channels, the trigger fields per entity, our own echo.

normalize.py applies these filters; the trigger fields themselves live in shared/mapping.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.events import Entity
from shared.mapping import (
    LINE_TRIGGER_FIELDS,
    OPPORTUNITY_TRIGGER_FIELDS,
    account_trigger_fields,
    contact_trigger_fields,
)
from shared.settings import Settings

OPPORTUNITY_CHANNELS = ("/data/OpportunityChangeEvent",)
LINE_CHANNEL = "/data/OpportunityLineItemChangeEvent"
LINE_CDC_MIN_VERSION = 60.0  # OpportunityLineItem has change events from API 60.0


def channels(settings: Settings) -> tuple[str, ...]:
    """The CDC channels the listener subscribes to: the configured ones, plus the opportunity channels when
    opportunities are followed (the line channel only from API 60.0, where Salesforce has it)."""
    wanted = list(settings.salesforce.channels)
    if settings.opportunity.watched:
        wanted += OPPORTUNITY_CHANNELS
        if float(settings.salesforce.api_version) >= LINE_CDC_MIN_VERSION:
            wanted.append(LINE_CHANNEL)
    return tuple(dict.fromkeys(wanted))


@dataclass(frozen=True)
class Filters:
    """The trigger fields per entity and our own client tag."""

    triggers: Mapping[Entity, frozenset[str]]
    client_tag: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Filters:
        return cls(
            triggers={
                Entity.ACCOUNT: account_trigger_fields(settings),
                Entity.CONTACT: contact_trigger_fields(settings),
                Entity.OPPORTUNITY: OPPORTUNITY_TRIGGER_FIELDS,
                Entity.OPPORTUNITY_LINE: LINE_TRIGGER_FIELDS,
            },
            client_tag=settings.salesforce.client_tag,
        )

    def is_echo(self, change_origin: str) -> bool:
        """True when the change was made by sfls itself (`Sforce-Call-Options: client=<tag>`)."""
        if not self.client_tag or not change_origin:
            return False
        pattern = rf"(?:^|[;\s])client={re.escape(self.client_tag)}(?:$|[;/,\s])"
        return re.search(pattern, change_origin) is not None
