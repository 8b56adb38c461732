"""The comparison of `sfls reconcile`: Salesforce accounts against the LogiSense accounts linked to them.

Both sides go through the syncer's own rules, so what counts as drift is exactly what the syncer would write:
`shared/mapping.py` maps the Salesforce record, services/syncer/accounts.py `account_body` adds the LogiSense ids
of its parent and invoice recipient, and services/syncer/lookups.py `diff` compares (a field the syncer never
sends is never drift). The kinds:
- `account_missing`: a Salesforce account with no LogiSense account linked to it (repaired by a resync);
- `account_field_mismatch`: one drift per field the syncer would change, with both values (repaired by a resync);
- `account_unmappable`: the syncer could not map it (it would dead-letter it), with the reason; for a person;
- `account_orphan`: a LogiSense account whose link names no Salesforce account, or a deleted one it was not
  closed or flagged for (`sync.on_account_delete`); reported, never deleted;
- `account_duplicate_link`: two or more LogiSense accounts linked to one Salesforce id; reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.syncer.accounts import account_body
from services.syncer.lookups import diff
from services.syncer.references import References
from services.syncer.snapshot import id15
from shared.errors import MappingError
from shared.mapping import map_account
from shared.settings import Settings


class Kind(StrEnum):
    ACCOUNT_MISSING = "account_missing"
    ACCOUNT_FIELD_MISMATCH = "account_field_mismatch"
    ACCOUNT_UNMAPPABLE = "account_unmappable"
    ACCOUNT_ORPHAN = "account_orphan"
    ACCOUNT_DUPLICATE_LINK = "account_duplicate_link"


REPAIRABLE = frozenset({Kind.ACCOUNT_MISSING, Kind.ACCOUNT_FIELD_MISMATCH})


@dataclass(frozen=True)
class Drift:
    """One difference between the two systems."""

    kind: Kind
    salesforce_id: str | None = None
    logisense_id: int | None = None
    field: str | None = None
    salesforce: Any = None  # the value the syncer would write
    logisense: Any = None  # the value LogiSense holds
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The drift as one JSON object (`--format json`); values only for a field mismatch."""
        item: dict[str, Any] = {"kind": self.kind.value}
        for name in ("salesforce_id", "logisense_id", "field"):
            if getattr(self, name) is not None:
                item[name] = getattr(self, name)
        if self.kind is Kind.ACCOUNT_FIELD_MISMATCH:
            item["salesforce"], item["logisense"] = self.salesforce, self.logisense
        if self.detail:
            item["detail"] = self.detail
        return item


def _closed(record: Mapping[str, Any], settings: Settings, refs: References) -> bool:
    """True when a LogiSense account already carries what the syncer does to a deleted Salesforce account."""
    mode = settings.sync.on_account_delete
    if mode == "ignore":
        return True
    if mode == "flag":
        return bool(record.get(settings.sync.deleted_flag_field))
    closed = refs("account_status_type", settings.sync.closed_status_name)
    return record.get("accountStatusTypeId") is not None and int(record["accountStatusTypeId"]) == closed


def compare_accounts(
    salesforce: Iterable[Mapping[str, Any]],
    logisense: Mapping[str, list[dict[str, Any]]],
    settings: Settings,
    refs: References,
    *,
    complete: bool = True,
) -> Iterator[Drift]:
    """Every drift between Salesforce account records (with `IsDeleted`) and LogiSense accounts by 15-character link.

    `complete`: the Salesforce side holds every account, so a LogiSense account linked to none is an orphan
    (False under `--where`, which reads only some).
    """
    seen: set[str] = set()
    for record in salesforce:
        sfdc_id = str(record["Id"])
        sid = id15(sfdc_id)
        seen.add(sid)
        linked = logisense.get(sid, [])
        if len(linked) > 1:
            yield _duplicate(sfdc_id, linked)
        if record.get("IsDeleted"):
            if linked and not _closed(linked[0], settings, refs):
                yield Drift(
                    Kind.ACCOUNT_ORPHAN,
                    sfdc_id,
                    int(linked[0]["identity"]),
                    detail=f"deleted in Salesforce; not {_closing(settings)} in LogiSense",
                )
            continue
        if not linked:
            yield Drift(Kind.ACCOUNT_MISSING, sfdc_id, detail=str(record.get("Name") or ""))
            continue
        yield from _fields(record, linked[0], logisense, settings, refs)
    if not complete:
        return
    for sid, linked in logisense.items():
        if sid in seen:
            continue
        link = str(linked[0].get(settings.logisense.link_field) or sid)
        if len(linked) > 1:
            yield _duplicate(link, linked)
        for record in linked:
            yield Drift(
                Kind.ACCOUNT_ORPHAN, link, int(record["identity"]), detail="its link names no Salesforce account"
            )


def _fields(
    record: Mapping[str, Any],
    existing: dict[str, Any],
    logisense: Mapping[str, list[dict[str, Any]]],
    settings: Settings,
    refs: References,
) -> Iterator[Drift]:
    sfdc_id = str(record["Id"])
    try:
        mapped = map_account(record, settings, refs, multi_currency=refs.multi_currency)
    except MappingError as exc:
        yield Drift(Kind.ACCOUNT_UNMAPPABLE, sfdc_id, int(existing["identity"]), detail=str(exc))
        return
    deps = {id15(d): int(logisense[id15(d)][0]["identity"]) for d in mapped.dependencies if id15(d) in logisense}
    wanted = account_body(mapped, id15(sfdc_id), deps, existing, settings)
    for reference, names in (
        (mapped.parent_sfdc_id, ("parentAccountId",)),
        (mapped.invoicer_sfdc_id, ("invoicerAccountId", "usageInvoicerAccountId")),
    ):
        if reference and id15(reference) not in deps and id15(reference) != id15(sfdc_id):
            for name in names:  # the referenced account is missing itself: reported on its own
                wanted.pop(name, None)
    for name, value in sorted(diff(existing, wanted).items()):
        yield Drift(
            Kind.ACCOUNT_FIELD_MISMATCH,
            sfdc_id,
            int(existing["identity"]),
            field=name,
            salesforce=value,
            logisense=existing.get(name),
        )


def _duplicate(link: str, linked: list[dict[str, Any]]) -> Drift:
    identities = sorted(int(r["identity"]) for r in linked)
    return Drift(
        Kind.ACCOUNT_DUPLICATE_LINK,
        link,
        identities[0],
        detail=f"LogiSense accounts {', '.join(map(str, identities))} are all linked to it",
    )


def _closing(settings: Settings) -> str:
    return "flagged" if settings.sync.on_account_delete == "flag" else "closed"
