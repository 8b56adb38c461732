"""Salesforce side of an import: upsert batches by external id, skipping records whose hash matches.

Per batch (at most 200 records):
1. read the stored hashes of the batch's records in one SOQL query
   (`SELECT <ext>, <hash> FROM <object> WHERE <ext> IN (...)`): reads only, never a write;
2. drop the records whose stored hash equals the new one (unchanged);
3. resolve the lookups of the changed records: one query per relation for the parents' Salesforce
   Ids by their external id (a record whose parent is not in Salesforce is rejected with that
   reason). Salesforce could also take `Package__r: {LogiSense_Id__c: ...}` in the upsert itself (the
   Requests tab writer does, services/requests_tab/records.py), but resolving here gives a clearer
   reason when a parent is missing;
4. upsert the rest by the external-id field with allOrNone=false, so one rejected record does not
   stop the others; each result says created, updated, or the errors Salesforce gave.

Composite or Bulk API 2.0 (`importer.bulk_threshold`, 0 = always composite): with a threshold, the
changed records wait instead of being written per batch, as JSON lines in a temporary file (so
memory stays flat whatever the threshold). Once `bulk_threshold` are waiting, they go to
Salesforce as one Bulk API 2.0 ingest job, and so does everything the entity still has to write;
an entity that never gets there writes its changes through composite calls of 200 at the end
(`finish()`). So a big first import or a mass change costs a handful of jobs, and the everyday
small change stays a quick composite call. Bulk results are matched back by external id and
rejected rows are reported exactly like composite rejections. Lookups point at other entities,
which land earlier, so waiting records never depend on each other.

Why the hash lives on the record (`LogiSense_Hash__c`) rather than in a local state file: the
record is the truth of what landed. A run that crashed half-way, a record an admin deleted, a new
sandbox: each is seen and repaired by the next run, and a second identical run writes nothing.
The price is one query per 200 records, which reads, not writes.

A whole-call failure (the batch's request itself failed after the client's retries) marks every
record of the batch failed with that reason; the run goes on with the next batch.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from services.importer.model import ImportEntity
from services.importer.transform import Key, Prepared
from shared.errors import SflsError
from shared.salesforce import COLLECTION_LIMIT


class SalesforceWriter(Protocol):
    """The part of shared.salesforce.SalesforceRest the lander uses."""

    def upsert_collection(
        self, sobject: str, external_field: str, records: Sequence[dict[str, Any]], all_or_none: bool = False
    ) -> list[dict[str, Any]]: ...

    def bulk_upsert(self, sobject: str, external_field: str, records: Iterable[dict[str, Any]]) -> dict[str, Any]: ...

    def query_all_iter(self, soql: str) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class Rejection:
    """A record Salesforce refused, with its reason."""

    logisense_id: Key
    record: dict[str, Any]
    error: str
    response: str


Pending = tuple[Key, dict[str, Any]]  # a changed record ready to send: its LogiSense id (or key) and its record
UNPROCESSED = {
    "success": False,
    "errors": [{"statusCode": "UNPROCESSED", "message": "the Bulk API job did not process this record"}],
}


class Waiting:
    """Changed records waiting to be written, as JSON lines in a temporary file (memory stays flat)."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None
        self.count = 0

    def add(self, items: Iterable[Pending]) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by close()
        for identity, record in items:
            self._file.write(json.dumps([identity, record], separators=(",", ":"), default=str) + "\n")
            self.count += 1

    def __iter__(self) -> Iterator[Pending]:
        if self._file is None:
            return
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            identity, record = json.loads(line)
            yield identity if isinstance(identity, str) else int(identity), record

    def clear(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
        self.count = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.count = 0


@dataclass
class Landed:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    bulk_jobs: int = 0  # Bulk API 2.0 jobs that ran
    bulk_jobs_failed: int = 0  # of which Salesforce failed as a whole

    @property
    def failed(self) -> int:
        return len(self.rejections)


def soql_in(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)


def describe_errors(errors: Any) -> str:
    """Salesforce's per-record errors as one readable line: `STATUS_CODE: message (fields)`."""
    if not isinstance(errors, list) or not errors:
        return "rejected by Salesforce without an error message"
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            parts.append(str(error))
            continue
        fields = error.get("fields") or []
        suffix = f" ({', '.join(map(str, fields))})" if fields else ""
        parts.append(f"{error.get('statusCode', 'ERROR')}: {error.get('message', '')}{suffix}")
    return "; ".join(parts)


class Lander:
    """Lands one entity's batches in its Salesforce object."""

    def __init__(
        self,
        salesforce: SalesforceWriter,
        entity: ImportEntity,
        *,
        external_id_field: str,
        hash_field: str,
        parents: dict[str, str] | None = None,
        dry_run: bool = False,
        bulk_threshold: int = 0,
    ) -> None:
        self._sf = salesforce
        self._bulk_threshold = bulk_threshold
        self._waiting = Waiting()  # changed records not written yet (with a threshold)
        self._bulk = False  # the entity reached the threshold: the rest goes through Bulk API 2.0 too
        self._parents = parents or {}  # parent entity -> its Salesforce object
        self._new: set[Key] = set()
        self.entity = entity
        self._ext = external_id_field
        self._hash = hash_field
        self._dry_run = dry_run

    def stored_hashes(self, ids: Iterable[Key]) -> dict[str, str | None]:
        """External id -> stored hash for the records of these ids that exist in Salesforce."""
        # Object and field names come from our entity table and settings; the ids are quoted.
        columns, where = f"{self._ext}, {self._hash}", f"{self._ext} IN ({soql_in(str(i) for i in ids)})"
        soql = f"SELECT {columns} FROM {self.entity.sobject} WHERE {where}"  # noqa: S608
        return {str(row[self._ext]): row.get(self._hash) for row in self._sf.query_all_iter(soql)}

    def land(self, batch: Sequence[Prepared]) -> Landed:
        outcome = Landed()
        changed = self._changed(batch, outcome)
        if not changed:
            return outcome
        if self._dry_run:
            outcome.created = sum(1 for p in changed if p.logisense_id in self._new)
            outcome.updated = len(changed) - outcome.created
            return outcome
        try:
            records = self.with_lookups(changed, outcome)
        except SflsError as exc:
            outcome.rejections = [self._rejected(p, f"resolving lookups failed: {exc}") for p in changed]
            return outcome
        sendable = [(p.logisense_id, records[p.logisense_id]) for p in changed if p.logisense_id in records]
        if self._bulk_threshold <= 0:
            self._upsert(sendable, outcome)
            return outcome
        self._waiting.add(sendable)
        if self._waiting.count >= self._bulk_threshold:
            self._bulk = True
            self._write_waiting(outcome)
        return outcome

    def finish(self) -> Landed:
        """Write what is still waiting at the end of the entity (Bulk if the entity got there, else composite)."""
        outcome = Landed()
        try:
            self._write_waiting(outcome)
        finally:
            self._waiting.close()
        return outcome

    def _write_waiting(self, outcome: Landed) -> None:
        if not self._waiting.count:
            return
        if self._bulk:
            self._bulk_upsert(outcome)
        else:
            chunk: list[Pending] = []
            for pending in self._waiting:
                chunk.append(pending)
                if len(chunk) == COLLECTION_LIMIT:
                    self._upsert(chunk, outcome)
                    chunk = []
            self._upsert(chunk, outcome)
        self._waiting.clear()

    def _changed(self, batch: Sequence[Prepared], outcome: Landed) -> list[Prepared]:
        """The batch's records whose stored hash differs (or that are not in Salesforce yet)."""
        if not batch:
            return []
        try:
            stored = self.stored_hashes(p.logisense_id for p in batch)
        except SflsError as exc:
            outcome.rejections = [self._rejected(p, f"reading stored hashes failed: {exc}") for p in batch]
            return []
        changed = [p for p in batch if stored.get(str(p.logisense_id), "") != p.hash]
        self._new = {p.logisense_id for p in changed if str(p.logisense_id) not in stored}
        outcome.unchanged = len(batch) - len(changed)
        return changed

    def _upsert(self, sendable: Sequence[Pending], outcome: Landed) -> None:
        """One composite sObject Collections upsert (at most 200 records)."""
        if not sendable:
            return
        try:
            results = self._sf.upsert_collection(
                self.entity.sobject, self._ext, [record for _, record in sendable], all_or_none=False
            )
        except SflsError as exc:
            outcome.rejections.extend(Rejection(i, record, str(exc), "") for i, record in sendable)
            return
        for (identity, record), result in zip(sendable, results, strict=True):
            self._tally(identity, record, result, outcome)

    def _bulk_upsert(self, outcome: Landed) -> None:
        """One Bulk API 2.0 job for every waiting record; a job that fails as a whole rejects them with its reason."""
        outcome.bulk_jobs += 1
        try:
            results = self._sf.bulk_upsert(self.entity.sobject, self._ext, self._bulk_records())
        except SflsError as exc:
            outcome.bulk_jobs_failed += 1
            outcome.rejections.extend(Rejection(i, record, str(exc), "") for i, record in self._waiting)
            return
        for identity, record in self._waiting:
            self._tally(identity, record, results.get(str(identity), UNPROCESSED), outcome)

    def _bulk_records(self) -> Iterator[dict[str, Any]]:
        """The waiting records in the order the Bulk job's CSV gets them (the first one's fields are the header)."""
        return (record for _, record in self._waiting)

    @staticmethod
    def _tally(identity: Key, record: dict[str, Any], result: dict[str, Any], outcome: Landed) -> None:
        if result.get("success"):
            if result.get("created"):
                outcome.created += 1
            else:
                outcome.updated += 1
        else:
            errors = result.get("errors")
            outcome.rejections.append(Rejection(identity, record, describe_errors(errors), json.dumps(errors)))

    def with_lookups(self, changed: Sequence[Prepared], outcome: Landed) -> dict[Key, dict[str, Any]]:
        """The records to send, lookups set to parent Ids; records with a missing parent go to `outcome`."""
        records = {p.logisense_id: dict(p.record) for p in changed}
        for relation in self.entity.relations:
            wanted = {
                str(ref[self._ext])
                for record in records.values()
                if isinstance(ref := record.get(relation.relationship), dict)
            }
            if not wanted:
                continue
            parents = self._parent_ids(self._parents[relation.entity], wanted)
            for prepared in changed:
                record = records.get(prepared.logisense_id)
                ref = record.pop(relation.relationship, None) if record is not None else None
                if record is None or not isinstance(ref, dict):
                    continue
                parent_id = parents.get(str(ref[self._ext]))
                if parent_id is None:
                    del records[prepared.logisense_id]
                    outcome.rejections.append(
                        self._rejected(
                            prepared,
                            f"{relation.salesforce}: {relation.entity} {ref[self._ext]} is not in Salesforce "
                            f"(import {relation.entity} first)",
                        )
                    )
                else:
                    record[relation.salesforce] = parent_id
        return records

    def _parent_ids(self, sobject: str, external_ids: set[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        ordered = sorted(external_ids)
        for start in range(0, len(ordered), 200):
            chunk = ordered[start : start + 200]
            columns, where = f"Id, {self._ext}", f"{self._ext} IN ({soql_in(chunk)})"
            soql = f"SELECT {columns} FROM {sobject} WHERE {where}"  # noqa: S608
            for row in self._sf.query_all_iter(soql):
                found[str(row[self._ext])] = str(row["Id"])
        return found

    @staticmethod
    def _rejected(prepared: Prepared, reason: str) -> Rejection:
        return Rejection(prepared.logisense_id, prepared.record, reason, "")
