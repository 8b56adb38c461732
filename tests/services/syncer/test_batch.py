"""Coalescing: one unit of work per account, every record kept (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.syncer.batch import EventRef, Received, coalesce
from shared.events import ChangeEvent, ChangeType, Entity


def record(
    offset: int,
    account: str,
    *,
    entity: Entity = Entity.ACCOUNT,
    change: ChangeType = ChangeType.UPDATE,
    rec: str = "",
    opportunity: str | None = None,
) -> Received:
    event = ChangeEvent(
        event_id=f"e{offset}",
        entity=entity,
        change_type=change,
        record_id=rec or account,
        account_id=account,
        commit_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        opportunity_id=opportunity,
    )
    return Received("t", 0, offset, event.key, event.to_bytes(), event.headers(), EventRef.of(event))


A = "001000000000001AAA"
B = "001000000000002AAA"
C1 = "003000000000001AAA"


def test_many_changes_to_one_account_make_one_unit_of_work() -> None:
    """Ten changes to A and one to B coalesce to two accounts, every record kept."""
    batch = coalesce([record(i, A) for i in range(10)] + [record(10, B)])
    assert list(batch.accounts) == [A, B]
    assert len(batch.accounts[A].records) == 10
    assert batch.size == 11
    assert batch.ratio == 5.5


def test_contact_events_join_their_account() -> None:
    """A contact change is keyed by its account and recorded as a contact change of it."""
    batch = coalesce([record(0, A, entity=Entity.CONTACT, rec=C1), record(1, A)])
    work = batch.accounts[A]
    assert work.contact_ids == {C1}
    assert (work.account_events, work.contact_events) == (1, 1)
    assert work.event_ids == ("e0", "e1")


def test_last_account_event_decides_deleted() -> None:
    """Delete then undelete is not a delete; a trailing delete is."""
    assert (
        not coalesce([record(0, A, change=ChangeType.DELETE), record(1, A, change=ChangeType.UNDELETE)])
        .accounts[A]
        .deleted
    )
    assert coalesce([record(0, A), record(1, A, change=ChangeType.DELETE)]).accounts[A].deleted


def test_malformed_records_are_kept_apart() -> None:
    """A value that is not a change event is set aside for the dead-letter topic, not dropped."""
    bad = Received("t", 0, 5, A.encode(), b"{not json", [], None, "not a change event")
    batch = coalesce([record(0, A), bad])
    assert batch.malformed == [bad]
    assert batch.size == 2
    assert list(batch.accounts) == [A]


O1 = "006000000000001AAA"
L1 = "00k000000000001AAA"


def test_opportunity_events_stay_with_their_account_grouped_per_opportunity() -> None:
    """An Opportunity and a line event of one opportunity are one opportunity of account A's work; A alone
    has only opportunity events (synced only when LogiSense lacks it), B has an account change too."""
    batch = coalesce(
        [
            record(0, A, entity=Entity.OPPORTUNITY, rec=O1, opportunity=O1),
            record(1, A, entity=Entity.OPPORTUNITY_LINE, rec=L1, opportunity=O1),
            record(2, B, entity=Entity.OPPORTUNITY, rec=O1[:15], opportunity=O1[:15]),
            record(3, B),
        ]
    )
    work = batch.accounts[A]
    assert list(work.opportunities) == [O1[:15]]
    assert [r.offset for r in work.opportunities[O1[:15]]] == [0, 1]
    assert [r.offset for r in work.records] == [0, 1]  # an account failure dead-letters them with it
    assert work.only_opportunities
    assert (work.account_events, work.contact_events) == (0, 0)
    assert not batch.accounts[B].only_opportunities
    assert list(batch.accounts[B].opportunities) == [O1[:15]]


class _Message:
    """The part of a confluent-kafka Message that Received reads."""

    def __init__(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self._value, self._headers = value, headers

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return A.encode()

    def topic(self) -> str:
        return "sfls.changes"

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return 7


def test_standard_headers_are_not_kept_but_rebuilt_exactly_and_others_are_kept() -> None:
    """A record whose headers are the ones its event implies keeps none (memory) and gives them back equal for a
    dead letter; extra headers (a replay's) are kept as they came."""
    event = ChangeEvent(
        event_id="e1",
        entity=Entity.CONTACT,
        change_type=ChangeType.DELETE,
        record_id=C1,
        account_id=A,
        commit_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )
    plain = Received.from_message(_Message(event.to_bytes(), event.headers()))  # type: ignore[arg-type]
    assert plain.headers is None
    assert plain.original_headers == event.headers()
    replayed = [*event.headers(), ("sfls.replayed_at", b"2026-01-02T00:00:00Z")]
    kept = Received.from_message(_Message(event.to_bytes(), replayed))  # type: ignore[arg-type]
    assert kept.original_headers == replayed
    assert (kept.topic, kept.partition, kept.offset) == ("sfls.changes", 3, 7)
