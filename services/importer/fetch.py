"""LogiSense side of an import: stream an entity's items page by page, never the whole set.

A plain entity is `GET <resource>/Paged` page after page (the client's `paged`). An entity that is
a deep-search child (a rate, under its group, under its rate plan) is a `<route>/Search` page after
page with the children requested; each child is yielded on its own with its ancestors' ids added,
so at most one page of parents with their children is in memory. Invoices are `Invoice/Search`
with their items, optionally for one account.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from services.importer.model import Deep, ImportEntity

Condition = dict[str, Any]


class LogisenseReader(Protocol):
    """The part of shared.logisense.LogisenseClient the importer uses."""

    def paged(self, resource: str, page_size: int | None = None) -> AsyncIterator[dict[str, Any]]: ...

    def search_paged(
        self,
        resource: str,
        conditions: Sequence[Condition] = (),
        *,
        order_by: Sequence[dict[str, str]] | None = None,
        page_size: int | None = None,
        children: dict[str, Any] | None = None,
    ) -> AsyncIterator[dict[str, Any]]: ...


def _children_spec(path: tuple[str, ...]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for key in reversed(path):
        spec = {key: spec}
    return spec


def _flatten(parent: dict[str, Any], deep: Deep, depth: int, inherited: dict[str, Any]) -> list[dict[str, Any]]:
    if depth == len(deep.path):
        return [{**parent, **inherited}]
    if depth in deep.inherit:
        inherited = {**inherited, deep.inherit[depth]: parent.get("identity")}
    found: list[dict[str, Any]] = []
    for child in parent.get(deep.path[depth]) or ():
        if isinstance(child, dict):
            found.extend(_flatten(child, deep, depth + 1, inherited))
    return found


async def items(
    client: LogisenseReader,
    entity: ImportEntity,
    *,
    page_size: int,
    conditions: Sequence[Condition] = (),
) -> AsyncIterator[dict[str, Any]]:
    """Every item of the entity, streamed in LogiSense id order where the API allows it."""
    order = [{"name": "identity", "direction": "asc"}]
    if entity.deep is not None:
        async for parent in client.search_paged(
            entity.deep.route, order_by=order, page_size=page_size, children=_children_spec(entity.deep.path)
        ):
            for child in _flatten(parent, entity.deep, 0, {}):
                yield child
    elif entity.name == "invoice":
        async for invoice in client.search_paged(
            "Invoice", conditions, order_by=order, page_size=page_size, children={"invoiceItems": {}}
        ):
            yield invoice
    else:
        async for item in client.paged(entity.resource, page_size=page_size):
            yield item
