"""References between records: what a write may put in a reference field, and what a delete does to children.

Writes (store.py plans every REST and Bulk write through here):
- `check_target`: a reference field's id must name a live record of an object the field refers to:
  an id of another object gets FIELD_INTEGRITY_EXCEPTION "<Label>: id value of incorrect type: <id>",
  an id of no record INVALID_CROSS_REFERENCE_KEY "invalid cross reference id", one of a deleted record
  ENTITY_IS_DELETED "entity is deleted" (each with the field); a malformed id is MALFORMED_ID (base.coerce).
- `resolve_relationships`: a REST body may set a reference by the parent's external id,
  `"Request__r": {"Request_Id__c": "abc"}`; `external_parent_id` (shared with the Bulk API's
  `Request__r.Request_Id__c` columns) finds the parent, or answers INVALID_FIELD "Foreign key external ID:
  abc not found for field Request_Id__c in entity LogiSense_Request__c" (no fields).

Deletes follow each reference's delete constraint (schema.py): Cascade deletes the children with the parent
(and undelete restores those deleted with it), SetNull clears the children's reference (the children stay;
undeleting the parent sets it back), Restrict refuses to delete a parent that has live children with
DELETE_FAILED. Clearing a reference is no change event and leaves LastModifiedDate (an emulator choice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devstack.salesforce.base import ApiError, is_id, to18

if TYPE_CHECKING:
    from devstack.salesforce.schema import FieldDef, ObjectDef
    from devstack.salesforce.store import Store, Transaction


def check_target(store: Store, definition: FieldDef, value: str) -> None:
    """Refuse a reference to a record that is not a live record of one of the field's target objects."""
    name = definition.name
    target = store.schema.by_prefix(value[:3]) if is_id(value) else None
    if target is None or target.name not in definition.reference_to:
        raise ApiError(
            400,
            "FIELD_INTEGRITY_EXCEPTION",
            f"{definition.label or name}: id value of incorrect type: {value}",
            [name],
        )
    record = store.records.get(target.name, {}).get(to18(value))
    if record is None:
        raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name])
    if record["IsDeleted"]:
        raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted", [name])


def external_parent_id(store: Store, lookup: FieldDef, parent_field: str, value: Any) -> str:
    """The id of the live parent whose external id `parent_field` is `value` (a reference set by external id)."""
    target = store.schema.get(lookup.reference_to[0]) if lookup.reference_to else None
    definition = target.field(parent_field) if target is not None else None
    if target is None or definition is None:
        raise ApiError(400, "INVALID_FIELD", f"Field name not found : {lookup.relationship_name}.{parent_field}")
    if not (definition.external_id or definition.unique):
        # An emulator choice: the text for a relationship keyed by a field that is no external id.
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"Field {definition.name} is not an External ID or indexed field for {target.name}",
            [lookup.name],
        )
    found = store.by_unique(target, definition.name, str(value))
    if found is None:
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"Foreign key external ID: {value} not found for field {definition.name} in entity {target.name}",
        )
    return found


def resolve_relationships(store: Store, obj: ObjectDef, body: dict[str, Any]) -> dict[str, Any]:
    """The body with each `Relationship__r: {ExternalId__c: value}` replaced by the reference field's id."""
    if not any(isinstance(v, dict) for k, v in body.items() if k != "attributes"):
        return body
    resolved: dict[str, Any] = {}
    given = {key.lower() for key in body}
    for key, value in body.items():
        lookup = obj.relationship(key) if key != "attributes" and obj.field(key) is None else None
        if lookup is None:
            resolved[key] = value
            continue
        if not isinstance(value, dict):
            raise ApiError(
                400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of {lookup.relationship_name} from {value!r}"
            )
        if lookup.name.lower() in given:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Cannot specify both an external ID reference {lookup.relationship_name} and a salesforce id, "
                f"{lookup.name}",
            )
        keys = [(k, v) for k, v in value.items() if k != "attributes"]
        if len(keys) != 1:
            # An emulator choice: the text for a relationship that names no or several fields.
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"{lookup.relationship_name}: a reference by external id names exactly one external id field",
                [lookup.name],
            )
        parent_field, parent_value = keys[0]
        resolved[lookup.name] = (
            None if parent_value is None else external_parent_id(store, lookup, parent_field, parent_value)
        )
    return resolved


# ---- deletes -------------------------------------------------------------------------------------------------
def check_delete(store: Store, obj: ObjectDef, record: dict[str, Any]) -> None:
    """Refuse deleting a parent that live children reference through a Restrict reference."""
    for child_obj, reference in store.schema.dependents(obj.name):
        if reference.delete_constraint != "Restrict":
            continue
        table = store.records.get(child_obj.name, {})
        ids = store.by_parent(child_obj, reference.name, [record["Id"]]) or ()
        live = [table[i] for i in ids if i in table and not table[i]["IsDeleted"]]
        if live:
            names = ", ".join(str(child.get("Name") or child["Id"]) for child in live[:5])
            plural = child_obj.plural_label or (child_obj.label or child_obj.name) + "s"
            raise ApiError(
                400,
                "DELETE_FAILED",
                f"Your attempt to delete {record.get('Name') or record['Id']} could not be completed because it is "
                f"associated with the following {plural.lower()}.: {names}",
            )


def cascade(tx: Transaction, obj: ObjectDef, record_id: str, *, deleted: bool) -> None:
    """What deleting (or undeleting) the record does to the records that reference it."""
    store = tx.store
    for child_obj, reference in store.schema.dependents(obj.name):
        ids = store.by_parent(child_obj, reference.name, [record_id]) or ()
        table = store.records[child_obj.name]
        children = [table[i] for i in ids if i in table]
        if reference.delete_constraint == "Cascade":
            for child in children:
                if deleted and child[reference.name] == record_id and not child["IsDeleted"]:
                    tx.set_deleted(child_obj, child["Id"], True, record_id)
                    cascade(tx, child_obj, child["Id"], deleted=True)
                elif not deleted and child["IsDeleted"] and child.get("_deleted_with") == record_id:
                    tx.set_deleted(child_obj, child["Id"], False, None)
                    cascade(tx, child_obj, child["Id"], deleted=False)
        elif reference.delete_constraint == "SetNull" and deleted:
            for child in children:
                if child.get(reference.name) == record_id and not child["IsDeleted"]:
                    _set_reference(tx, child_obj, child, reference.name, None)
                    store.cleared.setdefault(record_id, []).append((child_obj.name, child["Id"], reference.name))
    if not deleted:
        for child_name, child_id, field_name in store.cleared.pop(record_id, []):
            cleared = store.records[child_name].get(child_id)
            if cleared is not None and cleared.get(field_name) is None:
                _set_reference(tx, store.object(child_name), cleared, field_name, record_id)


def _set_reference(tx: Transaction, obj: ObjectDef, record: dict[str, Any], field_name: str, value: Any) -> None:
    updated = dict(record)
    updated[field_name] = value
    updated["SystemModstamp"] = tx.stamp
    tx.store.put(obj, updated)
