"""Salesforce DX source -> the emulator's schema JSON: the emulated org gets exactly what an admin deploys.

`load_source(directory)` reads a DX project (the one `sfls import schema --out DIR` writes, or any with the
same layout): `<dir>/force-app/main/default/objects/<Object>/<Object>.object-meta.xml`, its
`fields/<Field>.field-meta.xml`, and `tabs/<Object>.tab-meta.xml`; the directory may also be the `force-app`
folder or any folder holding `objects/`. It returns the shape `Schema.extend()` takes (schema.py):
custom objects (`__c`) under "objects" with label, pluralLabel, nameLabel, tab and description (and their
Text name field, 80 characters, as the field "Name"); the custom fields of standard objects under "fields".
Field types map back as

    Text -> string (length)            LongTextArea -> textarea (length)   Picklist -> picklist
    Checkbox -> boolean                 DateTime -> datetime                Date -> date
    Email / Phone / Url -> email / phone / url                              Currency -> currency
    Number -> int when its scale is 0 and precision at most 9, else double (precision, scale)
    Lookup / MasterDetail -> reference: referenceTo, relationshipName `<Field minus __c>__r` (how the API
      sets it), childRelationshipName (DX's relationshipName), deleteConstraint, masterDetail

A file that is not metadata XML, or a field type the emulator has none for, is a `SourceError` naming the file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

NS = "{http://soap.sforce.com/2006/04/metadata}"
NAME_LENGTH = 80  # a custom object's Text name field
INT_PRECISION = 9  # a Number of scale 0 and at most this many digits fits the emulator's int
TYPES = {
    "Text": "string",
    "LongTextArea": "textarea",
    "Picklist": "picklist",
    "Checkbox": "boolean",
    "DateTime": "datetime",
    "Date": "date",
    "Email": "email",
    "Phone": "phone",
    "Url": "url",
    "Currency": "currency",
    "Lookup": "reference",
    "MasterDetail": "reference",
}


class SourceError(ValueError):
    """A DX source directory that cannot be read as the emulator's schema."""


def _root(path: Path, tag: str) -> ET.Element:
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - our own source files, read by the dev stack only
    except (ET.ParseError, OSError) as error:
        raise SourceError(f"{path}: not readable metadata XML ({error})") from None
    if root.tag != NS + tag:
        raise SourceError(f"{path}: expected a {tag} in the namespace {NS[1:-1]}, found {root.tag}")
    return root


def _text(element: ET.Element, tag: str) -> str | None:
    child = element.find(NS + tag)
    return None if child is None or child.text is None else child.text.strip()


def _flag(element: ET.Element, tag: str) -> bool:
    return _text(element, tag) == "true"


def _objects_dir(directory: Path) -> Path:
    for candidate in (directory / "force-app" / "main" / "default", directory / "main" / "default", directory):
        if (candidate / "objects").is_dir():
            return candidate
    raise SourceError(f"{directory}: no objects/ folder (looked in force-app/main/default, main/default and itself)")


def field_from_source(path: Path) -> dict[str, Any]:
    """One CustomField file as an emulator field spec."""
    root = _root(path, "CustomField")
    name = _text(root, "fullName") or path.name.removesuffix(".field-meta.xml")
    sf_type = _text(root, "type") or ""
    spec: dict[str, Any] = {"name": name, "label": _text(root, "label") or name}
    if sf_type == "Number":
        precision, scale = int(_text(root, "precision") or 18), int(_text(root, "scale") or 0)
        spec.update(type="int" if scale == 0 and precision <= INT_PRECISION else "double")
        spec.update(precision=precision, scale=scale)
    elif sf_type in TYPES:
        spec["type"] = TYPES[sf_type]
    else:
        raise SourceError(f"{path}: field type {sf_type!r} has no emulator type; the emulator has {sorted(TYPES)}")
    if sf_type in {"Text", "LongTextArea"} and _text(root, "length"):
        spec["length"] = int(_text(root, "length") or 0)
    if sf_type == "Currency":
        spec.update(precision=int(_text(root, "precision") or 18), scale=int(_text(root, "scale") or 2))
    spec.update(_picklist(root) if sf_type == "Picklist" else {})
    spec.update(_reference(root, name, sf_type) if sf_type in {"Lookup", "MasterDetail"} else {})
    for tag in ("externalId", "unique", "required"):
        if _flag(root, tag):
            spec[tag] = True
    if _text(root, "externalId") == "true" and _text(root, "unique") == "false":
        spec["unique"] = False  # the emulator makes an External ID unique unless told otherwise
    return spec


def _picklist(root: ET.Element) -> dict[str, Any]:
    value_set = root.find(NS + "valueSet")
    values = [] if value_set is None else value_set.findall(f"{NS}valueSetDefinition/{NS}value")
    return {
        "picklistValues": [_text(v, "fullName") or "" for v in values],
        "restrictedPicklist": value_set is not None and _flag(value_set, "restricted"),
    }


def _reference(root: ET.Element, name: str, sf_type: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "referenceTo": _text(root, "referenceTo"),
        "relationshipName": name.removesuffix("__c") + "__r",
    }
    if _text(root, "relationshipName"):
        spec["childRelationshipName"] = _text(root, "relationshipName")
    if sf_type == "MasterDetail":
        spec["masterDetail"] = True
    else:
        spec["deleteConstraint"] = _text(root, "deleteConstraint") or "SetNull"
    return spec


def object_from_source(folder: Path, tabs: Path) -> dict[str, Any]:
    """A custom object folder (its object file and fields/) as an emulator object spec."""
    name = folder.name
    spec: dict[str, Any] = {"name": name}
    meta = folder / f"{name}.object-meta.xml"
    if meta.is_file():
        root = _root(meta, "CustomObject")
        spec["label"] = _text(root, "label") or name
        for tag in ("pluralLabel", "description"):
            if _text(root, tag):
                spec[tag] = _text(root, tag)
        name_field = root.find(NS + "nameField")
        if name_field is not None and _text(name_field, "label"):
            spec["nameLabel"] = _text(name_field, "label")
    spec["fields"] = _fields(folder)
    if "nameLabel" in spec:  # a Text name field holds 80 characters
        spec["fields"].insert(0, {"name": "Name", "label": spec["nameLabel"], "type": "string", "length": NAME_LENGTH})
    if (tabs / f"{name}.tab-meta.xml").is_file():
        _root(tabs / f"{name}.tab-meta.xml", "CustomTab")
        spec["tab"] = True
    return spec


def _fields(folder: Path) -> list[dict[str, Any]]:
    return [field_from_source(path) for path in sorted((folder / "fields").glob("*.field-meta.xml"))]


def load_source(directory: Path) -> dict[str, Any]:
    """The emulator's schema JSON of every object and field in a DX source directory."""
    if not directory.is_dir():
        raise SourceError(f"{directory}: not a directory (give the folder `sfls import schema --out` wrote)")
    base = _objects_dir(directory)
    objects: list[dict[str, Any]] = []
    fields: dict[str, list[dict[str, Any]]] = {}
    for folder in sorted(p for p in (base / "objects").iterdir() if p.is_dir()):
        if folder.name.endswith("__c"):
            objects.append(object_from_source(folder, base / "tabs"))
        else:
            found = _fields(folder)
            if found:
                fields[folder.name] = found
    return {"objects": _parents_first(objects), "fields": fields}


def _parents_first(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects in an order where each comes after the custom objects its fields refer to (cycles kept)."""
    by_name = {obj["name"]: obj for obj in objects}
    ordered: dict[str, dict[str, Any]] = {}
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered or name in visiting or name not in by_name:
            return
        visiting.add(name)
        for spec in by_name[name]["fields"]:
            if spec.get("referenceTo"):
                visit(str(spec["referenceTo"]))
        ordered[name] = by_name[name]

    for name in by_name:
        visit(name)
    return list(ordered.values())
