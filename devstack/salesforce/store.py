"""Records of the emulated org and the DML that changes them, one transaction at a time.

A `Transaction` validates each operation into a `Plan` before anything changes, so an
all-or-none sObject Collections request can be refused as a whole; applying a plan mutates the
records and indexes and appends a `Change`. `Transaction.commit()` hands the changes of the
transaction to the change-event builder (cdc.py), which is how a REST write becomes CDC.

Deleted records stay (IsDeleted = true) for queryAll and undelete; what deleting a record does to the
records that reference it follows the schema's delete constraints (references.py): Cascade deletes the
children in the same transaction (an Account's Contacts and Opportunities, an Opportunity's lines, a price
book's or product's entries, a master-detail parent's children) and undeleting restores them, as Salesforce
does; SetNull clears the reference; Restrict refuses the delete. Reference fields, also set by the parent's
external id (`"Request__r": {"Request_Id__c": ...}`), are checked by references.py too. The sales objects'
rules (price books, opportunities) are in sales.py.
Indexes: by id (per object, insertion-ordered), by every external-id/unique field (live
records only, case-insensitive), so lookups and upserts are O(1), and by every reference with a delete
constraint (`Schema.indexed()`, deleted records too), so `WHERE AccountId IN (...)` and a cascade read only
the children; the index follows schema extensions (`Schema.generation`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from devstack.salesforce import references, sales
from devstack.salesforce.base import ApiError, coerce, format_datetime, is_id, new_id, not_found, now_ms, to18
from devstack.salesforce.objects import add_currency, remove_currency
from devstack.salesforce.schema import ObjectDef, Schema

SYSTEM_WRITABLE_BY_ADMIN = {"Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "CreatedById", "LastModifiedById"}


@dataclass
class Change:
    """One committed record change: what CDC needs to shape an event."""

    entity: str
    change_type: str  # CREATE, UPDATE, DELETE, UNDELETE
    record_id: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass
class Plan:
    """A validated operation, ready to apply."""

    kind: str
    obj: ObjectDef
    record_id: str
    values: dict[str, Any] = field(default_factory=dict)
    created: bool = False


def _unique_key(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


ORG_ID = to18("00D5g0000000001")  # the org's id (the Pub/Sub tenant id), the same in every emulator


class Store:
    """All records, indexed by id and by unique fields; the org's single integration user."""

    def __init__(self, schema: Schema, username: str) -> None:
        self.schema = schema
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in schema.objects}
        self.unique: dict[tuple[str, str], dict[Any, str]] = {}
        # (child object, reference field) -> parent id -> child ids, for the references of Schema.indexed().
        self.children: dict[tuple[str, str], dict[str, set[str]]] = {}
        self._indexed_generation = schema.generation
        # Parent id -> (child object, child id, reference) cleared by the parent's delete (SetNull), for undelete.
        self.cleared: dict[str, list[tuple[str, str, str]]] = {}
        self.user_id = to18("0055g0000000001")
        self.org_id = ORG_ID
        self.on_commit: Callable[[Transaction], None] = lambda transaction: None
        stamp = format_datetime(now_ms())
        self.records["User"][self.user_id] = {
            "Id": self.user_id,
            "Username": username,
            "LastName": "Integration",
            "FirstName": "sfls",
            "Name": "sfls Integration",
            "Email": username,
            "Alias": "sfls",
            "IsActive": True,
            "IsDeleted": False,
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
            "CreatedById": self.user_id,
            "LastModifiedById": self.user_id,
        }
        self.multi_currency = False
        self.currencies: tuple[str, ...] = ("USD",)  # the first is the org (corporate) currency
        sales.seed(self)

    def set_multi_currency(self, enabled: bool, currencies: tuple[str, ...]) -> None:
        """Turn the org multi-currency (CurrencyIsoCode appears, existing records get the org currency) or back."""
        objects = self.schema.objects
        if enabled and currencies:
            self.currencies = tuple(currencies)
            add_currency(objects, self.currencies)
            for name in ("Account", "Product2", "Opportunity", "PricebookEntry", "OpportunityLineItem"):
                for record in self.records[name].values():
                    if record.get("CurrencyIsoCode") not in self.currencies:
                        record["CurrencyIsoCode"] = self.currencies[0]
        elif self.multi_currency:
            # An emulator choice: Salesforce cannot turn multi-currency off; here the field just goes away.
            remove_currency(objects)
            for name in ("Account", "Product2", "Opportunity", "PricebookEntry", "OpportunityLineItem"):
                for record in self.records[name].values():
                    record.pop("CurrencyIsoCode", None)
        self.multi_currency = bool(enabled and currencies)

    # ---- lookups -------------------------------------------------------------------------
    def object(self, name: str) -> ObjectDef:
        obj = self.schema.get(name)
        if obj is None:
            raise not_found()
        self.records.setdefault(obj.name, {})
        return obj

    def get(self, obj: ObjectDef, record_id: str, *, include_deleted: bool = False) -> dict[str, Any] | None:
        if not is_id(record_id):
            return None
        record = self.records[obj.name].get(to18(record_id))
        if record is None or (record["IsDeleted"] and not include_deleted):
            return None
        return record

    def find(self, record_id: str) -> tuple[ObjectDef, dict[str, Any]] | None:
        """Any live record by id (its key prefix names the object)."""
        obj = self.schema.by_prefix(record_id[:3]) if is_id(record_id) else None
        if obj is None:
            return None
        record = self.get(obj, record_id)
        return (obj, record) if record is not None else None

    def by_unique(self, obj: ObjectDef, field_name: str, value: Any) -> str | None:
        return self.unique.get((obj.name, field_name), {}).get(_unique_key(value))

    def by_parent(self, obj: ObjectDef, field_name: str, parent_ids: Iterable[Any]) -> list[str] | None:
        """Ids of the records (deleted ones too) whose reference `field_name` holds one of `parent_ids`, or None
        when that reference has no index (a reference without a delete constraint, see Schema.indexed)."""
        self._follow_schema()
        definition = obj.field(field_name)
        if definition is None or not any(d is definition for d in self.schema.indexed(obj.name)):
            return None
        index = self.children.get((obj.name, definition.name), {})
        found: set[str] = set()
        for parent in parent_ids:
            if isinstance(parent, str) and is_id(parent):
                found.update(index.get(to18(parent), ()))
        return sorted(found)  # generated ids count up (base.new_id): their order is the records' insertion order

    # ---- indexes -------------------------------------------------------------------------
    def _index(self, obj: ObjectDef, record: dict[str, Any], *, add: bool) -> None:
        for definition in obj.external_id_fields:
            value = record.get(definition.name)
            if value is None:
                continue
            index = self.unique.setdefault((obj.name, definition.name), {})
            key = _unique_key(value)
            if add:
                index[key] = record["Id"]
            elif index.get(key) == record["Id"]:
                del index[key]

    def _follow_schema(self) -> None:
        """Rebuild the indexes when the schema was extended since they were built (new indexed references)."""
        if self._indexed_generation != self.schema.generation:
            self._indexed_generation = self.schema.generation
            self.reindex()

    def _index_parent(self, obj: ObjectDef, record: dict[str, Any], *, add: bool) -> None:
        for reference in self.schema.indexed(obj.name):
            parent = record.get(reference.name)
            if not parent:
                continue
            index = self.children.setdefault((obj.name, reference.name), {})
            if add:
                index.setdefault(parent, set()).add(record["Id"])
            elif parent in index:
                index[parent].discard(record["Id"])

    def put(self, obj: ObjectDef, record: dict[str, Any]) -> None:
        """Store a complete record (admin seeding; no change event)."""
        self._follow_schema()
        old = self.records[obj.name].get(record["Id"])
        if old is not None:
            self._index(obj, old, add=False)
            self._index_parent(obj, old, add=False)
        self.records[obj.name][record["Id"]] = record
        self._index_parent(obj, record, add=True)
        if not record["IsDeleted"]:
            self._index(obj, record, add=True)

    def reindex(self) -> None:
        self.unique.clear()
        self.children.clear()
        for name, records in self.records.items():
            obj = self.schema.get(name)
            if obj is None:
                continue
            for record in records.values():
                self._index_parent(obj, record, add=True)
                if not record["IsDeleted"]:
                    self._index(obj, record, add=True)

    def transaction(self, origin: str) -> Transaction:
        return Transaction(self, origin)

    # ---- admin seeding -------------------------------------------------------------------
    def admin_put(self, obj: ObjectDef, values: dict[str, Any]) -> str:
        """Create or replace a record with a given Id and system fields; no CDC event."""
        record_id = values.get("Id")
        if record_id is not None and (not is_id(record_id) or to18(record_id)[:3] != obj.key_prefix):
            raise ApiError(400, "MALFORMED_ID", f"Id: id value of incorrect type: {record_id}", ["Id"])
        cleaned = {k: v for k, v in values.items() if k != "attributes"}
        cleaned["Id"] = to18(record_id) if record_id else new_id(obj.key_prefix)
        stamp = format_datetime(now_ms())
        record = _blank(obj, cleaned["Id"], self.user_id, stamp)
        for key, value in cleaned.items():
            definition = obj.field(key)
            if definition is None:
                raise no_such_column(key, obj.name)
            if definition.name in SYSTEM_WRITABLE_BY_ADMIN:
                record[definition.name] = value
            elif definition.calculated:
                continue
            else:
                record[definition.name] = coerce(definition.name, definition.type, value, definition.length)
        _derive(obj, record)
        record["SystemModstamp"] = record["LastModifiedDate"]
        self.put(obj, record)
        return str(record["Id"])


def no_such_column(name: str, entity: str) -> ApiError:
    return ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {entity}", [name])


def _blank(obj: ObjectDef, record_id: str, user_id: str, stamp: str) -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(
        (f.name for f in obj.fields.values() if not (f.calculated and f.type == "address")), None
    )
    record.update(
        Id=record_id,
        IsDeleted=False,
        CreatedDate=stamp,
        LastModifiedDate=stamp,
        SystemModstamp=stamp,
        CreatedById=user_id,
        LastModifiedById=user_id,
    )
    for definition in obj.fields.values():
        if definition.type == "boolean" and record.get(definition.name) is None and not definition.system:
            record[definition.name] = False
    if "OwnerId" in record:
        record["OwnerId"] = user_id
    return record


def _derive(obj: ObjectDef, record: dict[str, Any]) -> None:
    """Calculated fields: the full Name of a Contact or User."""
    if obj.name in {"Contact", "User"}:
        parts = [record.get("FirstName"), record.get("LastName")]
        record["Name"] = " ".join(p for p in parts if p) or None


class Transaction:
    """Validate operations into plans, apply them, then commit the changes as CDC events."""

    def __init__(self, store: Store, origin: str) -> None:
        self.store = store
        self.origin = origin
        self.changes: list[Change] = []
        self.stamp_ms = now_ms()
        self.stamp = format_datetime(self.stamp_ms)
        self._pending_unique: dict[tuple[str, str, Any], str] = {}
        # Planned earlier in this transaction, for the sales rules: price book entries by
        # (book, product, currency), and the book a first line brings to an opportunity.
        self.pending_entries: dict[tuple[str, str, str | None], dict[str, Any]] = {}
        self.pending_books: dict[str, str] = {}

    # ---- validation ------------------------------------------------------------------------
    def _values(self, obj: ObjectDef, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        values: dict[str, Any] = {}
        locked: list[str] = []
        for key, value in references.resolve_relationships(self.store, obj, body).items():
            if key == "attributes":
                continue
            definition = obj.field(key)
            if definition is None:
                raise no_such_column(key, obj.name)
            if definition.name == "Id":
                continue
            if not (definition.createable if creating else definition.updateable):
                locked.append(definition.name)
                continue
            values[definition.name] = definition.fit_number(
                coerce(definition.name, definition.type, value, definition.length)
            )
        if locked:
            raise ApiError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(locked)}. Please check the security settings "
                "of this field and verify that it is read/write for your profile or permission set.",
                locked,
            )
        for name, value in values.items():
            definition = obj.fields[name]
            if definition.restricted and value is not None and value not in definition.picklist_values:
                raise ApiError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{definition.label or name}: bad value for restricted picklist field: {value}",
                    [name],
                )
            if value is None and (definition.required or not definition.nillable):
                raise (
                    ApiError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", [name])
                    if definition.required
                    else ApiError(
                        400, "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required type: null", [name]
                    )
                )
            if definition.type == "reference" and value is not None:
                references.check_target(self.store, definition, value)
        return values

    def _check_unique(self, obj: ObjectDef, record_id: str, values: dict[str, Any]) -> None:
        for definition in obj.external_id_fields:
            value = values.get(definition.name)
            if value is None:
                continue
            key = (obj.name, definition.name, _unique_key(value))
            holder = self.store.by_unique(obj, definition.name, value) or self._pending_unique.get(key)
            if holder is not None and holder != record_id:
                raise ApiError(
                    400,
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {definition.name} duplicates value on record with id: {holder}",
                    [definition.name],
                )

    def _reserve_unique(self, obj: ObjectDef, record_id: str, values: dict[str, Any]) -> None:
        for definition in obj.external_id_fields:
            if values.get(definition.name) is not None:
                self._pending_unique[(obj.name, definition.name, _unique_key(values[definition.name]))] = record_id

    def plan_create(self, obj: ObjectDef, body: dict[str, Any]) -> Plan:
        values = self._values(obj, body, creating=True)
        missing = [f.name for f in obj.fields.values() if f.required and values.get(f.name) is None]
        if missing:
            raise ApiError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        record_id = new_id(obj.key_prefix)
        if obj.custom and values.get("Name") is None and obj.field("Name") is not None:
            values["Name"] = record_id  # Salesforce names a custom object's record without a Name by its id
        sales.check_create(self, obj, record_id, values)
        self._check_unique(obj, record_id, values)
        self._reserve_unique(obj, record_id, values)
        return Plan("create", obj, record_id, values, created=True)

    def plan_update(self, obj: ObjectDef, record_id: Any, body: dict[str, Any]) -> Plan:
        if not is_id(record_id):
            raise ApiError(400, "MALFORMED_ID", f"Id: id value of incorrect type: {record_id}", ["Id"])
        record = self.store.records[obj.name].get(to18(record_id))
        if record is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if record["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        values = self._values(obj, body, creating=False)
        sales.check_update(self, obj, record, values)
        self._check_unique(obj, record["Id"], values)
        self._reserve_unique(obj, record["Id"], values)
        return Plan("update", obj, record["Id"], values)

    def plan_upsert(self, obj: ObjectDef, field_name: str, value: str, body: dict[str, Any]) -> Plan:
        definition = obj.field(field_name)
        if definition is None or not (definition.external_id or definition.name == "Id"):
            raise ApiError(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        body = dict(body)
        for key in list(body):
            if key.lower() == definition.name.lower():
                if body[key] is not None and str(body[key]) != value:
                    raise ApiError(
                        400,
                        "INVALID_FIELD",
                        f"The value of {definition.name} in the request body does not match the value in the URL",
                        [definition.name],
                    )
                del body[key]
        if definition.name == "Id":
            return self.plan_update(obj, value, body)
        holder = self.store.by_unique(obj, definition.name, value)
        if holder is None:
            pending = self._pending_unique.get((obj.name, definition.name, _unique_key(value)))
            if pending is not None:
                holder = pending
        if holder is None or holder not in self.store.records[obj.name]:
            body[definition.name] = value
            if holder is not None:  # created earlier in this same request: a duplicate
                raise ApiError(
                    400,
                    "DUPLICATE_EXTERNAL_ID",
                    f"{definition.name}: more than one record found for external id field: [{holder}]",
                    [definition.name],
                )
            return self.plan_create(obj, body)
        return self.plan_update(obj, holder, body)

    def plan_delete(self, obj: ObjectDef, record_id: Any) -> Plan:
        if not is_id(record_id):
            raise ApiError(400, "MALFORMED_ID", f"Id: id value of incorrect type: {record_id}", ["Id"])
        record = self.store.records[obj.name].get(to18(record_id))
        if record is None:
            raise not_found()
        if record["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        sales.check_delete(self, obj, record)
        references.check_delete(self.store, obj, record)
        return Plan("delete", obj, record["Id"])

    def plan_undelete(self, obj: ObjectDef, record_id: Any) -> Plan:
        record = self.store.records[obj.name].get(to18(record_id)) if is_id(record_id) else None
        if record is None:
            raise not_found()
        if not record["IsDeleted"]:
            raise ApiError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin")
        self._check_unique(obj, record["Id"], record)
        return Plan("undelete", obj, record["Id"])

    # ---- application -----------------------------------------------------------------------
    def apply(self, plan: Plan) -> Plan:
        handler = getattr(self, f"_apply_{plan.kind}")
        handler(plan)
        return plan

    def _apply_create(self, plan: Plan) -> None:
        record = _blank(plan.obj, plan.record_id, self.store.user_id, self.stamp)
        record.update(plan.values)
        _derive(plan.obj, record)
        self.store.put(plan.obj, record)
        self.changes.append(Change(plan.obj.name, "CREATE", plan.record_id, None, dict(record)))

    def _apply_update(self, plan: Plan) -> None:
        record = self.store.records[plan.obj.name][plan.record_id]
        old = dict(record)
        updated = dict(record)
        updated.update(plan.values)
        updated["LastModifiedDate"] = self.stamp
        updated["SystemModstamp"] = self.stamp
        updated["LastModifiedById"] = self.store.user_id
        _derive(plan.obj, updated)
        self.store.put(plan.obj, updated)
        self.changes.append(Change(plan.obj.name, "UPDATE", plan.record_id, old, dict(updated)))

    def set_deleted(self, obj: ObjectDef, record_id: str, deleted: bool, deleted_with: str | None) -> None:
        """Mark the record (un)deleted, deleted with `deleted_with` when a cascade deletes it; a change."""
        record = dict(self.store.records[obj.name][record_id])
        record["IsDeleted"] = deleted
        record["SystemModstamp"] = self.stamp
        record["_deleted_with"] = deleted_with
        self.store.put(obj, record)
        self.changes.append(Change(obj.name, "DELETE" if deleted else "UNDELETE", record_id, None, dict(record)))

    def _apply_delete(self, plan: Plan) -> None:
        self.set_deleted(plan.obj, plan.record_id, True, None)
        references.cascade(self, plan.obj, plan.record_id, deleted=True)

    def _apply_undelete(self, plan: Plan) -> None:
        self.set_deleted(plan.obj, plan.record_id, False, None)
        references.cascade(self, plan.obj, plan.record_id, deleted=False)

    def internal_update(self, obj: ObjectDef, record_id: str, values: dict[str, Any]) -> None:
        """A system update of the transaction (a roll-up, a mirrored price): no field-level checks."""
        self._apply_update(Plan("update", obj, record_id, values))

    def run(self, plans: Iterable[Callable[[], Plan]], *, all_or_none: bool) -> list[Plan | ApiError]:
        """Plan every operation, then apply the good ones (or none if all_or_none and one failed)."""
        outcomes: list[Plan | ApiError] = []
        for make in plans:
            try:
                outcomes.append(make())
            except ApiError as error:
                outcomes.append(error)
        if all_or_none and any(isinstance(o, ApiError) for o in outcomes):
            return outcomes
        return [o if isinstance(o, ApiError) else self.apply(o) for o in outcomes]

    def commit(self) -> None:
        if self.changes:
            sales.finalize(self)
        if self.changes:
            self.store.on_commit(self)
        self.changes = []
