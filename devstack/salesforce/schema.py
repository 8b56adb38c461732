"""The emulated org's schema: objects, fields, key prefixes, relationships, and the describe documents.

The built-in objects are in objects.py. The schema is extensible: `extend()` takes the JSON shape of
`--schema FILE` and `POST /__admin/schema` (shared/salesforce_view.py's `VIEW_SCHEMA` is one):

    {"objects": [{"name": "LogiSense_Package__c", "label": "LogiSense Package",
                  "pluralLabel": "LogiSense Packages", "nameLabel": "Package", "tab": true,
                  "fields": [{"name": "LogiSense_Id__c", "type": "string", "externalId": true}]}],
     "fields": {"Account": [{"name": "Region_Code__c", "type": "string"}]}}

Object keys: name, label, pluralLabel, nameLabel (the Name field's label), tab, description, fields.
Field keys: name, type, label, description, nillable, required, createable, updateable, externalId,
unique, length, precision and scale (numbers: a value with more integer digits than precision - scale is
refused with NUMBER_OUTSIDE_VALID_RANGE, a double is rounded to its scale), picklistValues and
restrictedPicklist (true: other values refused), and for references: referenceTo, relationshipName,
childRelationshipName (the parent's name for its children, `X` described as `X__r` for custom fields),
deleteConstraint (what deleting the parent does to the child: SetNull, the default for a lookup;
Restrict; Cascade) and masterDetail (true: required, cascade delete, and the child has no OwnerId).
Unknown keys are refused (SchemaError); extending with a field as it is already defined changes nothing,
so loading the same schema twice is fine.

A parent's describe lists every reference to it in `childRelationships` (cascadeDelete, restrictedDelete);
`dependents()` and `indexed()` give store.py the references whose parents' deletes reach their children.
Field lookups are case-insensitive, as in Salesforce; every object gets the system fields.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from devstack.salesforce.base import ApiError

# Compound fields: the compound name, its component -> flat field name (CDC nests by component).
ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country")
SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "double": "xsd:double",
    "currency": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "address": "urn:address",
}
FIELD_TYPES = {
    "id",
    "string",
    "textarea",
    "picklist",
    "reference",
    "boolean",
    "double",
    "currency",
    "int",
    "date",
    "datetime",
    "email",
    "phone",
    "url",
    "address",
}
DELETE_CONSTRAINTS = ("SetNull", "Restrict", "Cascade")
NUMBER_TYPES = {"double", "currency", "int"}


class SchemaError(ValueError):
    """A schema definition (file or admin request) is not valid."""


@dataclass
class FieldDef:
    """One field of an object, with what describe reports about it."""

    name: str
    type: str = "string"
    label: str = ""
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    required: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    length: int = 255
    compound: str | None = None  # the compound field this one is a component of
    component: str | None = None  # its name inside the compound (CDC nesting)
    calculated: bool = False
    custom: bool = False
    system: bool = False
    picklist_values: tuple[str, ...] = ()
    restricted: bool = False  # a restricted picklist refuses values outside picklist_values
    default_value: str | None = None
    master_detail: bool = False
    child_relationship: str | None = None  # the parent's name for the children of this reference
    delete_constraint: str | None = None  # SetNull, Restrict, Cascade; None: the parent's delete leaves it be
    precision: int = 0  # numbers: digits in all (0: not limited)
    scale: int = 0  # numbers: digits after the point
    description: str = ""

    @property
    def is_long_text(self) -> bool:
        return self.type == "textarea"

    def fit_number(self, value: Any) -> Any:
        """A number within the field's precision, rounded to its scale; NUMBER_OUTSIDE_VALID_RANGE if too large."""
        if value is None or self.type not in NUMBER_TYPES or not self.precision:
            return value
        if self.type == "double":
            value = round(float(value), self.scale)
        if abs(value) >= 10 ** (self.precision - self.scale):
            raise ApiError(
                400,
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{self.label or self.name}: value outside of valid range on numeric field: {value}",
                [self.name],
            )
        return value

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or self.name,
            "type": self.type,
            "soapType": SOAP_TYPES.get(self.type, "xsd:string"),
            "length": self.length if self.type in {"string", "textarea", "picklist", "email", "phone", "url"} else 0,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "externalId": self.external_id,
            "unique": self.unique,
            "idLookup": self.external_id or self.type == "id",
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "compoundFieldName": self.compound,
            "calculated": self.calculated,
            "custom": self.custom,
            "defaultedOnCreate": self.system or self.type == "boolean",
            "filterable": self.type != "textarea",
            "sortable": self.type != "textarea",
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default_value,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist_values
            ],
            "restrictedPicklist": self.restricted,
            "defaultValue": self.default_value,
            "precision": self.precision if self.type in NUMBER_TYPES else 0,
            "scale": self.scale if self.type in {"double", "currency"} else 0,
            "digits": self.precision if self.type == "int" else 0,
            "cascadeDelete": self.delete_constraint == "Cascade",
            "restrictedDelete": self.delete_constraint == "Restrict",
            "relationshipOrder": 0 if self.master_detail else None,
            "writeRequiresMasterRead": False if self.master_detail else None,
            "inlineHelpText": None,
        }


@dataclass
class ObjectDef:
    """An sObject type: its name, key prefix and fields (looked up case-insensitively)."""

    name: str
    key_prefix: str
    label: str = ""
    custom: bool = False
    plural_label: str = ""
    tab: bool = False  # a custom tab shows its records in the Salesforce UI (describe: nothing more)
    description: str = ""
    api_writable: bool = True  # False: the API may only read it (User and OpportunityStage)
    cdc_min_version: float = 0.0  # its change event channel exists for clients of this API version and later
    fields: dict[str, FieldDef] = field(default_factory=dict)
    _by_lower: dict[str, FieldDef] = field(default_factory=dict, repr=False)
    _by_relationship: dict[str, FieldDef] = field(default_factory=dict, repr=False)

    def add(self, definition: FieldDef) -> None:
        if definition.type not in FIELD_TYPES:
            raise SchemaError(f"field {self.name}.{definition.name}: unknown type {definition.type!r}")
        self.fields[definition.name] = definition
        self._by_lower[definition.name.lower()] = definition
        if definition.relationship_name:
            self._by_relationship[definition.relationship_name.lower()] = definition

    def remove(self, name: str) -> None:
        definition = self.fields.pop(name, None)
        if definition is not None:
            self._by_lower.pop(name.lower(), None)
            if definition.relationship_name:
                self._by_relationship.pop(definition.relationship_name.lower(), None)

    def field(self, name: str) -> FieldDef | None:
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        return self._by_relationship.get(name.lower())

    @property
    def external_id_fields(self) -> list[FieldDef]:
        return [f for f in self.fields.values() if f.external_id or f.unique]

    @property
    def compounds(self) -> dict[str, list[FieldDef]]:
        """Compound field name -> its component fields."""
        groups: dict[str, list[FieldDef]] = {}
        for definition in self.fields.values():
            if definition.compound:
                groups.setdefault(definition.compound, []).append(definition)
        return groups

    @property
    def change_event_channel(self) -> str:
        base = self.name[:-3] + "__" if self.name.endswith("__c") else self.name
        return f"/data/{base}ChangeEvent"

    def describe(self, version: str, children: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The sObject describe; `children` are its childRelationships (Schema.describe gives them)."""
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label or self.name,
            "labelPlural": self.plural_label or (self.label or self.name) + "s",
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "createable": self.api_writable,
            "updateable": self.name == "User" or self.api_writable,
            "deletable": self.api_writable,
            "undeletable": True,
            "queryable": True,
            "retrieveable": True,
            "searchable": True,
            "fields": [f.describe() for f in self.fields.values()],
            "childRelationships": children or [],
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }


def system_fields(obj: ObjectDef, *, owner: bool) -> None:
    obj.add(FieldDef("Id", "id", "Record ID", nillable=False, createable=False, updateable=False, system=True))
    obj.add(
        FieldDef("IsDeleted", "boolean", "Deleted", nillable=False, createable=False, updateable=False, system=True)
    )
    for name, label in (("CreatedDate", "Created Date"), ("LastModifiedDate", "Last Modified Date")):
        obj.add(FieldDef(name, "datetime", label, nillable=False, createable=False, updateable=False, system=True))
    obj.add(FieldDef("SystemModstamp", "datetime", "System Modstamp", createable=False, updateable=False, system=True))
    for name, rel, label in (
        ("CreatedById", "CreatedBy", "Created By ID"),
        ("LastModifiedById", "LastModifiedBy", "Last Modified By ID"),
    ):
        obj.add(
            FieldDef(
                name,
                "reference",
                label,
                nillable=False,
                createable=False,
                updateable=False,
                reference_to=("User",),
                relationship_name=rel,
                system=True,
            )
        )
    if owner:
        obj.add(FieldDef("OwnerId", "reference", "Owner ID", reference_to=("User",), relationship_name="Owner"))


_FIELD_KEYS = {
    "name",
    "type",
    "label",
    "description",
    "nillable",
    "externalId",
    "unique",
    "required",
    "referenceTo",
    "relationshipName",
    "childRelationshipName",
    "deleteConstraint",
    "masterDetail",
    "length",
    "precision",
    "scale",
    "updateable",
    "createable",
    "picklistValues",
    "restrictedPicklist",
}
_OBJECT_KEYS = {"name", "label", "pluralLabel", "nameLabel", "tab", "description", "fields"}
_REFERENCE_KEYS = {"referenceTo", "relationshipName", "childRelationshipName", "deleteConstraint", "masterDetail"}


def _integer(owner: str, spec: dict[str, Any], key: str, default: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(f"{owner}.{spec['name']}: {key} must be a non-negative integer")
    return value


def _reference_keys(owner: str, spec: dict[str, Any], kind: str) -> dict[str, Any]:
    """The FieldDef arguments of a reference's keys (SchemaError when they do not fit together)."""
    name = spec["name"]
    if kind != "reference":
        given = sorted(_REFERENCE_KEYS & set(spec))
        if given:
            raise SchemaError(f"{owner}.{name}: {given} apply to reference fields only")
        return {}
    reference_to = spec.get("referenceTo") or ()
    if isinstance(reference_to, str):
        reference_to = (reference_to,)
    if not reference_to or not all(isinstance(t, str) for t in reference_to):
        raise SchemaError(f"{owner}.{name}: a reference needs referenceTo (an object name)")
    master_detail = bool(spec.get("masterDetail", False))
    constraint = spec.get("deleteConstraint", "Cascade" if master_detail else "SetNull")
    if constraint not in DELETE_CONSTRAINTS:
        raise SchemaError(f"{owner}.{name}: deleteConstraint must be one of {', '.join(DELETE_CONSTRAINTS)}")
    if master_detail and (constraint != "Cascade" or len(reference_to) != 1):
        raise SchemaError(f"{owner}.{name}: a master-detail field has one referenceTo and deletes with its parent")
    relationship = spec.get("relationshipName") or (
        name[:-3] + "__r" if name.endswith("__c") else name.removesuffix("Id")
    )
    child = spec.get("childRelationshipName")
    if child is not None and (not isinstance(child, str) or not child):
        raise SchemaError(f"{owner}.{name}: childRelationshipName must be a name")
    if child and name.endswith("__c") and not child.endswith("__r"):
        child += "__r"
    return {
        "reference_to": tuple(reference_to),
        "relationship_name": relationship,
        "child_relationship": child,
        "delete_constraint": constraint,
        "master_detail": master_detail,
    }


def _field_from_json(owner: str, spec: Any) -> FieldDef:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise SchemaError(f"{owner}: each field needs a JSON object with a 'name'")
    unknown = set(spec) - _FIELD_KEYS
    if unknown:
        raise SchemaError(f"{owner}.{spec['name']}: unknown keys {sorted(unknown)}")
    name = spec["name"]
    kind = spec.get("type", "string")
    reference = _reference_keys(owner, spec, kind)
    required = bool(spec.get("required", False)) or reference.get("master_detail", False)
    precision, scale = _integer(owner, spec, "precision", 0), _integer(owner, spec, "scale", 0)
    if (precision or scale) and kind not in NUMBER_TYPES:
        raise SchemaError(f"{owner}.{name}: precision and scale apply to number fields only")
    if scale > precision or (kind == "int" and scale):
        raise SchemaError(f"{owner}.{name}: scale must be at most precision (and 0 for int)")
    return FieldDef(
        name,
        kind,
        str(spec.get("label", name)),
        nillable=bool(spec.get("nillable", not required)) and not required,
        createable=bool(spec.get("createable", True)),
        updateable=bool(spec.get("updateable", True)),
        external_id=bool(spec.get("externalId", False)),
        unique=bool(spec.get("unique", spec.get("externalId", False))),
        required=required,
        length=_integer(owner, spec, "length", 255),
        custom=name.endswith("__c"),
        picklist_values=tuple(str(v) for v in spec.get("picklistValues") or ()),
        restricted=bool(spec.get("restrictedPicklist", False)),
        precision=precision,
        scale=scale,
        description=str(spec.get("description", "")),
        **reference,
    )


Relation = tuple[ObjectDef, FieldDef]  # a child object and its reference to the parent


class Schema:
    """Every object of the org; custom objects get key prefixes a00, a01, ... in definition order.

    `generation` counts the extensions, so that what is derived from the schema (the relationships here,
    the store's by-parent index) knows when to rebuild."""

    def __init__(self) -> None:
        from devstack.salesforce.objects import build_default_objects  # objects.py builds on this module

        self.objects: dict[str, ObjectDef] = build_default_objects()
        self._by_lower = {name.lower(): obj for name, obj in self.objects.items()}
        self._by_prefix = {obj.key_prefix: obj for obj in self.objects.values()}
        self._custom_count = 0
        self.generation = 0
        # (generation, parent -> its child relationships, child -> its indexed references), built when asked.
        self._relations: tuple[int, dict[str, list[Relation]], dict[str, list[FieldDef]]] | None = None

    def copy(self) -> Schema:
        return copy.deepcopy(self)

    def get(self, name: str) -> ObjectDef | None:
        return self._by_lower.get(name.lower())

    def by_prefix(self, prefix: str) -> ObjectDef | None:
        return self._by_prefix.get(prefix)

    # ---- relationships ---------------------------------------------------------------------
    def _derived(self) -> tuple[int, dict[str, list[Relation]], dict[str, list[FieldDef]]]:
        if self._relations is None or self._relations[0] != self.generation:
            children: dict[str, list[Relation]] = {}
            indexed: dict[str, list[FieldDef]] = {}
            for obj in self.objects.values():
                for definition in obj.fields.values():
                    if definition.type != "reference":
                        continue
                    for target in definition.reference_to:
                        children.setdefault(target, []).append((obj, definition))
                    if definition.delete_constraint:
                        indexed.setdefault(obj.name, []).append(definition)
            self._relations = (self.generation, children, indexed)
        return self._relations

    def child_relationships(self, parent: str) -> list[Relation]:
        """Every reference to `parent`, in definition order."""
        return self._derived()[1].get(parent, [])

    def dependents(self, parent: str) -> list[Relation]:
        """The references to `parent` that its delete reaches (a delete constraint: Cascade, SetNull, Restrict)."""
        return [(child, f) for child, f in self.child_relationships(parent) if f.delete_constraint]

    def indexed(self, child: str) -> list[FieldDef]:
        """The references of `child` that store.py indexes by parent id: those with a delete constraint."""
        return self._derived()[2].get(child, [])

    def child_relationship(self, parent: str, name: str) -> Relation | None:
        """The child relationship of `parent` called `name` (case-insensitive), as SOQL subqueries name it."""
        lowered = name.lower()
        return next(
            (r for r in self.child_relationships(parent) if (r[1].child_relationship or "").lower() == lowered), None
        )

    def describe(self, obj: ObjectDef, version: str) -> dict[str, Any]:
        """The object's describe with its childRelationships."""
        children: list[dict[str, Any]] = [
            {
                "cascadeDelete": definition.delete_constraint == "Cascade",
                "childSObject": child.name,
                "deprecatedAndHidden": False,
                "field": definition.name,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": definition.child_relationship,
                "restrictedDelete": definition.delete_constraint == "Restrict",
            }
            for child, definition in self.child_relationships(obj.name)
        ]
        return obj.describe(version, children)

    # ---- extension --------------------------------------------------------------------------
    def _next_prefix(self) -> str:
        digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        prefix = "a0" + digits[self._custom_count % 62]
        self._custom_count += 1
        return prefix

    def _object(self, spec: Any, added: list[str]) -> ObjectDef:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise SchemaError("each object needs a JSON object with a 'name'")
        name = spec["name"]
        unknown = set(spec) - _OBJECT_KEYS
        if unknown:
            raise SchemaError(f"{name}: unknown keys {sorted(unknown)}")
        if not name.endswith("__c"):
            raise SchemaError(f"custom object {name!r} must end in '__c'")
        obj = self.get(name)
        if obj is None:
            obj = ObjectDef(name, self._next_prefix(), custom=True)
            system_fields(obj, owner=True)
            self.objects[name] = obj
            self._by_lower[name.lower()] = obj
            self._by_prefix[obj.key_prefix] = obj
            added.append(name)
        obj.label = str(spec.get("label", obj.label or name))
        obj.plural_label = str(spec.get("pluralLabel", obj.plural_label))
        obj.tab = bool(spec.get("tab", obj.tab))
        obj.description = str(spec.get("description", obj.description))
        name_label = str(spec.get("nameLabel", obj.fields["Name"].label if "Name" in obj.fields else "Name"))
        if obj.field("Name") is None or obj.fields["Name"].label != name_label:
            obj.add(FieldDef("Name", "string", name_label))
        return obj

    def _add_fields(self, obj: ObjectDef, specs: Any, added: list[str]) -> None:
        if not isinstance(specs, list):
            raise SchemaError(f"{obj.name}: 'fields' is a list of fields")
        for spec in specs:
            definition = _field_from_json(obj.name, spec)
            if obj.field(definition.name) == definition:
                continue  # already defined so: loading a schema again changes nothing
            obj.add(definition)
            added.append(f"{obj.name}.{definition.name}")
        if any(f.master_detail for f in obj.fields.values()):
            obj.remove("OwnerId")  # a master-detail child is owned by its parent

    def extend(self, spec: Any) -> list[str]:
        """Add custom objects and fields from the JSON shape in the module docstring; returns what was added."""
        if not isinstance(spec, dict):
            raise SchemaError("a schema extension is a JSON object with 'objects' and/or 'fields'")
        added: list[str] = []
        try:
            for obj_spec in spec.get("objects", []):
                obj = self._object(obj_spec, added)
                self._add_fields(obj, obj_spec.get("fields", []), added)
            fields = spec.get("fields", {})
            if not isinstance(fields, dict):
                raise SchemaError("'fields' maps an object name to a list of fields")
            for obj_name, field_specs in fields.items():
                target = self.get(obj_name)
                if target is None:
                    raise SchemaError(f"cannot add fields to unknown object {obj_name!r}")
                self._add_fields(target, field_specs, added)
        finally:
            self.generation += 1
        return added
