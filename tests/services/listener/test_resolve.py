"""The parent lookup of the listener: accounts of contacts and opportunities, opportunities of lines (pure logic)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from services.listener.resolve import AccountResolver
from shared.events import Entity

ACCOUNT = "001000000000001AAA"
OPPORTUNITY = "006000000000001AAA"
LINE = "00k000000000001AAA"
CONTACT = "003000000000001AAA"


class Rows:
    """A RecordReader answering from fixed rows, recording each query's object and fields."""

    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows
        self.queries: list[tuple[str, tuple[str, ...], bool]] = []

    def query_by_ids(
        self,
        sobject: str,
        fields: Iterable[str],
        ids: Iterable[str],
        chunk_size: int = 200,
        include_deleted: bool = False,
    ) -> Iterator[dict[str, Any]]:
        self.queries.append((sobject, tuple(fields), include_deleted))
        return iter([self.rows[i] for i in ids if i in self.rows])

    def query_all_iter(self, soql: str, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        raise AssertionError("not used")


def test_a_line_is_resolved_to_its_opportunity_and_that_opportunitys_account_once() -> None:
    """One query per entity (deleted rows included); the answers are cached, so a second resolve asks nothing."""
    source = Rows(
        {
            LINE: {"Id": LINE, "OpportunityId": OPPORTUNITY, "Opportunity": {"AccountId": ACCOUNT}},
            CONTACT: {"Id": CONTACT, "AccountId": ACCOUNT},
        }
    )
    resolver = AccountResolver(source)
    found = resolver.resolve([(Entity.OPPORTUNITY_LINE, LINE), (Entity.CONTACT, CONTACT)])
    assert found.opportunities == {LINE: OPPORTUNITY}
    assert found.accounts == {OPPORTUNITY: ACCOUNT, CONTACT: ACCOUNT}
    assert source.queries == [
        ("OpportunityLineItem", ("Id", "OpportunityId", "Opportunity.AccountId"), True),
        ("Contact", ("Id", "AccountId"), True),
    ]
    again = resolver.resolve([(Entity.OPPORTUNITY_LINE, LINE), (Entity.OPPORTUNITY, OPPORTUNITY)])
    assert (again.opportunities, again.accounts) == ({LINE: OPPORTUNITY}, {OPPORTUNITY: ACCOUNT})
    assert len(source.queries) == 2


def test_an_unknown_record_resolves_to_none() -> None:
    """A record Salesforce does not return has no account (the caller drops it as no_account)."""
    resolver = AccountResolver(Rows({}))
    found = resolver.resolve([(Entity.OPPORTUNITY, OPPORTUNITY), (Entity.OPPORTUNITY_LINE, LINE)])
    assert found.accounts == {OPPORTUNITY: None}
    assert found.opportunities == {LINE: None}
