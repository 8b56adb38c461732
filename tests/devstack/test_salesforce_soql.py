"""The emulator's SOQL subset: parsing, typing of literals, evaluation, ordering and errors."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.salesforce import soql
from devstack.salesforce.base import ApiError, to18
from devstack.salesforce.schema import Schema
from devstack.salesforce.store import Store


@pytest.fixture
def store() -> Store:
    """A store with three accounts, a parent link and two contacts."""
    store = Store(Schema(), "user@example.com")
    accounts = store.object("Account")
    contacts = store.object("Contact")
    parent = store.admin_put(
        accounts, {"Name": "Parent", "Type": "Customer", "CreatedDate": "2024-01-01T00:00:00.000+0000"}
    )
    store.admin_put(
        accounts,
        {"Name": "Child", "ParentId": parent, "BillingCity": "Paris", "CreatedDate": "2024-03-01T12:00:00.000+0000"},
    )
    store.admin_put(
        accounts, {"Name": "O'Brien & Sons", "Type": "Prospect", "CreatedDate": "2024-06-01T00:00:00.000+0000"}
    )
    store.admin_put(contacts, {"LastName": "Lovelace", "FirstName": "Ada", "AccountId": parent})
    store.admin_put(contacts, {"LastName": "Hopper"})
    return store


def run(store: Store, text: str, *, include_deleted: bool = False) -> tuple[int, list[dict[str, Any]]]:
    return soql.execute(store, soql.parse(text, store), include_deleted=include_deleted, version="62.0")


def names(store: Store, text: str) -> list[str]:
    return [r["Name"] for r in run(store, text)[1]]


def test_select_fields_with_attributes(store: Store) -> None:
    """Selected fields come back with canonical names and an attributes entry."""
    total, rows = run(store, "select id, name from account where name = 'parent'")
    assert total == 1
    assert list(rows[0]) == ["attributes", "Id", "Name"]
    assert rows[0]["attributes"]["type"] == "Account"


def test_where_operators(store: Store) -> None:
    """=, !=, IN, NOT IN, LIKE, AND, OR, NOT and parentheses combine as in SOQL."""
    assert names(store, "SELECT Name FROM Account WHERE Type != null ORDER BY Name") == ["O'Brien & Sons", "Parent"]
    assert names(store, "SELECT Name FROM Account WHERE Type IN ('Customer', 'Partner')") == ["Parent"]
    assert names(store, "SELECT Name FROM Account WHERE Type NOT IN ('Customer')") == ["O'Brien & Sons"]
    assert names(store, "SELECT Name FROM Account WHERE Name LIKE 'o\\'b%'") == ["O'Brien & Sons"]
    query = "SELECT Name FROM Account WHERE (Type = 'Customer' OR BillingCity = 'Paris') AND NOT Name = 'Child'"
    assert names(store, query) == ["Parent"]


def test_datetime_comparisons(store: Store) -> None:
    """Datetime literals compare in UTC, whatever offset they are written with."""
    query = "SELECT Name FROM Account WHERE CreatedDate >= 2024-03-01T14:00:00+02:00 ORDER BY CreatedDate"
    assert names(store, query) == ["Child", "O'Brien & Sons"]
    assert names(store, "SELECT Name FROM Account WHERE CreatedDate < 2024-02-01T00:00:00Z") == ["Parent"]


def test_date_literal_keywords(store: Store) -> None:
    """LAST_N_DAYS and TODAY select records created now, not the backdated ones."""
    store.admin_put(store.object("Account"), {"Name": "Fresh"})
    assert names(store, "SELECT Name FROM Account WHERE CreatedDate = LAST_N_DAYS:3") == ["Fresh"]
    assert names(store, "SELECT Name FROM Account WHERE CreatedDate = TODAY") == ["Fresh"]


def test_relationship_paths(store: Store) -> None:
    """Parent.Name and Account.Name resolve through lookups, in SELECT and WHERE."""
    _, rows = run(store, "SELECT Name, Parent.Name FROM Account WHERE Parent.Name = 'Parent'")
    assert rows[0]["Parent"]["Name"] == "Parent"
    _, contacts = run(store, "SELECT LastName, Account.Name, Account.Type FROM Contact ORDER BY LastName")
    assert contacts[0]["Account"] is None
    assert contacts[1]["Account"]["Name"] == "Parent"
    assert contacts[1]["Account"]["Type"] == "Customer"


def test_order_limit_offset_and_nulls(store: Store) -> None:
    """ORDER BY with DESC and NULLS LAST, then OFFSET and LIMIT."""
    ordered = names(store, "SELECT Name FROM Account ORDER BY Type DESC NULLS LAST, Name")
    assert ordered == ["O'Brien & Sons", "Parent", "Child"]
    assert names(store, "SELECT Name FROM Account ORDER BY Name LIMIT 1 OFFSET 1") == ["O'Brien & Sons"]
    assert names(store, "SELECT Name FROM Account ORDER BY Type NULLS FIRST")[0] == "Child"


def test_count(store: Store) -> None:
    """COUNT() returns the number of matches and no records."""
    assert run(store, "SELECT COUNT() FROM Account WHERE Type != null") == (2, [])


def test_id_lookups_accept_15_character_ids(store: Store) -> None:
    """Id IN (...) uses the index and accepts 15-character ids."""
    ids = [r["Id"] for r in run(store, "SELECT Id FROM Account ORDER BY Name")[1]]
    quoted = ", ".join(f"'{i[:15]}'" for i in ids[:2])
    query = f"SELECT Id FROM Account WHERE Id IN ({quoted})"  # noqa: S608 - ids the store generated
    found = [r["Id"] for r in run(store, query)[1]]
    assert sorted(found) == sorted(ids[:2])
    assert to18(ids[0][:15]) == ids[0]


def test_compound_address_selected(store: Store) -> None:
    """A compound address field comes back as Salesforce's lower-case address object."""
    _, rows = run(store, "SELECT BillingAddress FROM Account WHERE Name = 'Child'")
    assert rows[0]["BillingAddress"]["city"] == "Paris"
    assert rows[0]["BillingAddress"]["street"] is None


@pytest.mark.parametrize(
    ("text", "code", "fragment"),
    [
        ("SELECT Foo FROM Account", "INVALID_FIELD", "No such column 'Foo' on entity 'Account'"),
        ("SELECT Id FROM Nope", "INVALID_TYPE", "sObject type 'Nope' is not supported"),
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY", "unexpected token: <EOF>"),
        ("SELECT Id FROM Account LIMIT x", "MALFORMED_QUERY", "unexpected token: 'x'"),
        ("SELECT Id, Id FROM Account", "MALFORMED_QUERY", "duplicate field selected: Id"),
        ("SELECT Nope.Name FROM Contact", "INVALID_FIELD", "Didn't understand relationship 'Nope'"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2024-01-01", "INVALID_QUERY_FILTER_OPERATOR", "dateTime"),
        ("SELECT Id FROM Account WHERE Name = 5", "INVALID_QUERY_FILTER_OPERATOR", "should be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE Name = 'unterminated", "MALFORMED_QUERY", "unexpected token"),
        ("", "MALFORMED_QUERY", "query string is required"),
    ],
)
def test_errors(store: Store, text: str, code: str, fragment: str) -> None:
    """Bad SOQL raises the Salesforce error code with a readable message."""
    with pytest.raises(ApiError) as caught:
        soql.parse(text, store)
    assert caught.value.code == code
    assert fragment in caught.value.message


def test_error_message_points_at_the_column(store: Store) -> None:
    """The message repeats the query with a caret under the offending token, as Salesforce does."""
    with pytest.raises(ApiError) as caught:
        soql.parse("SELECT Id, Foo FROM Account", store)
    assert caught.value.message.startswith("\nSELECT Id, Foo FROM Account\n           ^\nERROR at Row:1:Column:12\n")


def test_deleted_rows_only_with_query_all(store: Store) -> None:
    """Deleted records are invisible to query and visible to queryAll."""
    accounts = store.object("Account")
    transaction = store.transaction("test")
    target = run(store, "SELECT Id FROM Account WHERE Name = 'Child'")[1][0]["Id"]
    transaction.apply(transaction.plan_delete(accounts, target))
    transaction.commit()
    assert "Child" not in names(store, "SELECT Name FROM Account")
    _, rows = run(store, "SELECT Name, IsDeleted FROM Account WHERE IsDeleted = true", include_deleted=True)
    assert [r["Name"] for r in rows] == ["Child"]
