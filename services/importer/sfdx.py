"""The schema as Salesforce DX source: what `sfls import schema --out DIR` writes for an org admin to deploy.

`render()` turns the schema JSON (services/importer/schema.py `sfls_schema`) into the files of a DX project:

    sfdx-project.json                                    force-app, sourceApiVersion = salesforce.api_version
    README.md                                            how to deploy it
    force-app/main/default/objects/<Object>/<Object>.object-meta.xml        each custom object
    force-app/main/default/objects/<Object>/fields/<Field>.field-meta.xml   each custom field, standard objects too
    force-app/main/default/tabs/<Object>.tab-meta.xml                       objects with "tab": true
    force-app/main/default/permissionsets/sfls_Integration.permissionset-meta.xml

Elements follow the Metadata API's order (fullName first, then alphabetical, as Salesforce retrieves them) and
its rules: an External ID is Text, Number or Email; a Lookup is never required (unless its delete constraint is
Restrict) and a Master-Detail has no `required` element; a Checkbox has a default and is never required; the
permission set names no required and no master-detail field (Salesforce refuses field permissions on them).
A lookup's `relationshipName` in DX is the child relationship (the parent's related list), not the `__r` name
the API sets the lookup by: `childRelationshipName` when the schema gives one, else the child object's plural.
`write()` writes the files; regenerating a directory it wrote before replaces the generated metadata.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from services.importer.schema import label_of
from shared.errors import ConfigError, SflsError

NAMESPACE = "http://soap.sforce.com/2006/04/metadata"
SOURCE = "force-app/main/default"
PERMISSION_SET = "sfls_Integration"
PROJECT_NAME = "sfls-schema"
TAB_MOTIF = "Custom57: Building"
DEFAULT_PRECISION, DEFAULT_SCALE = 18, 6  # a "double" without its own: 12 digits before the point, 6 after
INT_PRECISION = 9
TEXT_MAX = 255
LONG_TEXT_LINES = 3
EXTERNAL_ID_TYPES = {"Text", "Number", "Email"}

# Emulator type -> CustomField type.
FIELD_TYPES = {
    "string": "Text",
    "textarea": "LongTextArea",
    "picklist": "Picklist",
    "boolean": "Checkbox",
    "double": "Number",
    "int": "Number",
    "currency": "Currency",
    "date": "Date",
    "datetime": "DateTime",
    "email": "Email",
    "phone": "Phone",
    "url": "Url",
}

Node = tuple[str, "str | bool | int | list[Node]"]
Elements = dict[str, "str | bool | int | list[Node]"]


def _xml(root: str, children: list[Node]) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<{root} xmlns="{NAMESPACE}">']
    _lines(children, 1, lines)
    lines.append(f"</{root}>")
    return "\n".join(lines) + "\n"


def _lines(children: Iterable[Node], depth: int, lines: list[str]) -> None:
    pad = "    " * depth
    for tag, value in children:
        if isinstance(value, list):
            lines.append(f"{pad}<{tag}>")
            _lines(value, depth + 1, lines)
            lines.append(f"{pad}</{tag}>")
        else:
            text = ("true" if value else "false") if isinstance(value, bool) else escape(str(value))
            lines.append(f"{pad}<{tag}>{text}</{tag}>")


def plural(word: str) -> str:
    """English plural of the last word: Currency -> Currencies, Status -> Statuses, Rate -> Rates."""
    if word.endswith("y") and word[-2:-1].lower() not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


def _base(name: str) -> str:
    return name.removesuffix("__c")


def _is_master_detail(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "reference" and bool(spec.get("masterDetail"))


def _objects(schema: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Object name -> its custom fields (custom objects first, then the standard objects' fields)."""
    objects = {
        obj["name"]: [f for f in obj.get("fields", []) if f["name"].endswith("__c")] for obj in schema["objects"]
    }
    for name, specs in schema.get("fields", {}).items():
        objects.setdefault(name, []).extend(f for f in specs if f["name"].endswith("__c"))
    return objects


def child_relationships(schema: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(object, field) -> the child relationship name of each lookup and master-detail, unique per parent."""
    names: dict[tuple[str, str], str] = {}
    taken: dict[str, set[str]] = {}
    pending: list[tuple[str, dict[str, Any]]] = []
    for obj, specs in _objects(schema).items():
        for spec in specs:
            if spec.get("type") != "reference":
                continue
            parent = _reference(obj, spec)
            given = spec.get("childRelationshipName")
            if given:
                names[(obj, spec["name"])] = given
                taken.setdefault(parent, set()).add(given.lower())
            else:
                pending.append((obj, spec))
    for obj, spec in pending:
        used = taken.setdefault(_reference(obj, spec), set())
        candidate = plural(_base(obj))
        if candidate.lower() in used:
            candidate = f"{candidate}_{_base(spec['name'])}"[:40].rstrip("_")
        used.add(candidate.lower())
        names[(obj, spec["name"])] = candidate
    return names


def _reference(obj: str, spec: dict[str, Any]) -> str:
    target = spec.get("referenceTo")
    if isinstance(target, list):
        target = target[0] if len(target) == 1 else None
    if not isinstance(target, str) or not target:
        raise ConfigError(f"schema field {obj}.{spec['name']}: a reference needs one referenceTo object")
    return target


def _field_type(where: str, spec: dict[str, Any]) -> str:
    kind = spec.get("type", "string")
    if kind == "reference":
        return "MasterDetail" if _is_master_detail(spec) else "Lookup"
    if kind not in FIELD_TYPES:
        raise ConfigError(f"{where}: type {kind!r} has no Salesforce field type; use one of {sorted(FIELD_TYPES)}")
    return FIELD_TYPES[kind]


def _checked(where: str, spec: dict[str, Any], sf_type: str) -> Elements:
    """The elements every field type has a rule for: External ID, unique, required, delete constraint."""
    external = bool(spec.get("externalId"))
    unique = bool(spec.get("unique", external))  # as the emulator: an External ID is unique unless told otherwise
    if (external or unique) and sf_type not in EXTERNAL_ID_TYPES:
        raise ConfigError(f"{where}: only a Text, Number or Email field can be an External ID or unique")
    required = bool(spec.get("required"))
    constraint = spec.get("deleteConstraint") or ("Restrict" if required else "SetNull")
    if required and (sf_type in {"Checkbox", "MasterDetail"} or (sf_type == "Lookup" and constraint != "Restrict")):
        raise ConfigError(
            f"{where}: a {sf_type} field cannot be required (a lookup only with deleteConstraint Restrict)"
        )
    elements: Elements = {}
    if sf_type in EXTERNAL_ID_TYPES:
        elements.update(externalId=external, unique=unique)
    if sf_type not in {"Checkbox", "MasterDetail"}:
        elements["required"] = required
    if sf_type == "Lookup":
        elements["deleteConstraint"] = constraint
    return elements


def _sized(where: str, spec: dict[str, Any], sf_type: str) -> Elements:
    """Length, precision and scale, visible lines, a checkbox's default, a picklist's values."""
    if sf_type == "Text":
        length = int(spec.get("length", TEXT_MAX))
        if not 1 <= length <= TEXT_MAX:
            raise ConfigError(f"{where}: a Text field holds 1 to {TEXT_MAX} characters, not {length}")
        return {"length": length}
    if sf_type == "LongTextArea":
        return {"length": min(max(int(spec.get("length", 32768)), 256), 131072), "visibleLines": LONG_TEXT_LINES}
    if sf_type in {"Number", "Currency"}:
        precision, scale = _digits(spec)
        if not (1 <= precision <= 18 and 0 <= scale <= precision):
            raise ConfigError(f"{where}: a number has a precision of 1 to 18 digits and a scale of 0 to its precision")
        return {"precision": precision, "scale": scale}
    if sf_type == "Checkbox":
        return {"defaultValue": "false"}
    if sf_type == "Picklist":
        values = [str(v) for v in spec.get("picklistValues") or ()]
        if not values:
            raise ConfigError(f"{where}: a picklist needs picklistValues")
        definition: list[Node] = [("sorted", False)]
        definition += [("value", [("fullName", v), ("default", False), ("label", v)]) for v in values]
        restricted = bool(spec.get("restrictedPicklist"))
        return {"valueSet": [("restricted", restricted), ("valueSetDefinition", definition)]}
    return {}


def field_xml(obj: str, spec: dict[str, Any], child: str = "") -> str:
    """The CustomField source of one field (`child`: its child relationship name, for references)."""
    name = spec["name"]
    where = f"schema field {obj}.{name}"
    sf_type = _field_type(where, spec)
    elements: Elements = {"label": str(spec.get("label") or label_of(name))[:40]}
    elements["type"] = sf_type
    elements.update(_checked(where, spec, sf_type))
    elements.update(_sized(where, spec, sf_type))
    if spec.get("description"):
        elements["description"] = str(spec["description"])
    if sf_type in {"Lookup", "MasterDetail"}:
        elements.update(
            referenceTo=_reference(obj, spec), relationshipLabel=label_of(child)[:40], relationshipName=child
        )
    if sf_type == "MasterDetail":
        elements.update(relationshipOrder=0, reparentableMasterDetail=False, writeRequiresMasterRead=False)
    return _xml("CustomField", [("fullName", name), *sorted(elements.items())])


def _digits(spec: dict[str, Any]) -> tuple[int, int]:
    if spec.get("type") == "currency":
        return int(spec.get("precision", 18)), int(spec.get("scale", 2))
    if spec.get("type") == "int":
        return int(spec.get("precision", INT_PRECISION)), int(spec.get("scale", 0))
    return int(spec.get("precision", DEFAULT_PRECISION)), int(spec.get("scale", DEFAULT_SCALE))


def object_xml(obj: dict[str, Any], master_detail_child: bool) -> str:
    """The CustomObject source of a custom object (its fields are files of their own)."""
    label = str(obj.get("label") or label_of(obj["name"]))
    sharing = "ControlledByParent" if master_detail_child else "ReadWrite"
    description = obj.get("description") or "Written by sfls (LogiSense sync); deployed from `sfls import schema`."
    nodes: list[Node] = [
        ("deploymentStatus", "Deployed"),
        ("description", description),
        ("enableActivities", False),
        ("enableBulkApi", True),
        ("enableFeeds", False),
        ("enableHistory", False),
        ("enableReports", True),
        ("enableSearch", True),
        ("enableSharing", True),
        ("enableStreamingApi", True),
        ("externalSharingModel", sharing),
        ("label", label[:40]),
        ("nameField", [("label", str(obj.get("nameLabel") or f"{label} Name")[:40]), ("type", "Text")]),
        ("pluralLabel", str(obj.get("pluralLabel") or plural(label))[:40]),
        ("sharingModel", sharing),
        ("visibility", "Public"),
    ]
    return _xml("CustomObject", nodes)


def tab_xml() -> str:
    return _xml("CustomTab", [("customObject", True), ("motif", TAB_MOTIF)])


def permission_set_xml(schema: dict[str, Any]) -> str:
    """sfls_Integration: full access to every custom object, read and edit on every custom field it may name."""
    fields: list[Node] = []
    for obj, specs in sorted(_objects(schema).items()):
        for spec in sorted(specs, key=lambda s: str(s["name"])):
            if spec.get("required") or _is_master_detail(spec):
                continue  # Salesforce refuses field permissions on required and master-detail fields
            fields.append(
                ("fieldPermissions", [("editable", True), ("field", f"{obj}.{spec['name']}"), ("readable", True)])
            )
    objects: list[Node] = [
        (
            "objectPermissions",
            [
                ("allowCreate", True),
                ("allowDelete", True),
                ("allowEdit", True),
                ("allowRead", True),
                ("modifyAllRecords", False),
                ("object", obj["name"]),
                ("viewAllRecords", True),
            ],
        )
        for obj in sorted(schema["objects"], key=lambda o: str(o["name"]))
    ]
    tabs: list[Node] = [
        ("tabSettings", [("tab", obj["name"]), ("visibility", "Visible")])
        for obj in sorted(schema["objects"], key=lambda o: str(o["name"]))
        if obj.get("tab")
    ]
    head: list[Node] = [
        ("description", "What the sfls integration user reads and writes: sfls's custom objects and fields.")
    ]
    return _xml(
        "PermissionSet",
        [*head, *fields, ("hasActivationRequired", False), ("label", "sfls Integration"), *objects, *tabs],
    )


def render(schema: dict[str, Any], api_version: str) -> dict[str, str]:
    """Relative path -> content of every file of the DX project."""
    files = {
        "sfdx-project.json": json.dumps(
            {
                "packageDirectories": [{"path": "force-app", "default": True}],
                "name": PROJECT_NAME,
                "namespace": "",
                "sfdcLoginUrl": "https://login.salesforce.com",
                "sourceApiVersion": api_version,
            },
            indent=2,
        )
        + "\n",
        "README.md": README,
    }
    custom = {o["name"] for o in schema["objects"]}
    children = child_relationships(schema)
    details = {
        obj for obj, specs in _objects(schema).items() if obj in custom and any(_is_master_detail(s) for s in specs)
    }
    for obj in schema["objects"]:
        name = obj["name"]
        files[f"{SOURCE}/objects/{name}/{name}.object-meta.xml"] = object_xml(obj, name in details)
        if obj.get("tab"):
            files[f"{SOURCE}/tabs/{name}.tab-meta.xml"] = tab_xml()
    for obj, specs in _objects(schema).items():
        for spec in specs:
            child = children.get((obj, spec["name"]), "")
            files[f"{SOURCE}/objects/{obj}/fields/{spec['name']}.field-meta.xml"] = field_xml(obj, spec, child)
    files[f"{SOURCE}/permissionsets/{PERMISSION_SET}.permissionset-meta.xml"] = permission_set_xml(schema)
    return files


def write(directory: Path, files: dict[str, str]) -> None:
    """Write the project into `directory`; an earlier run's generated metadata there is replaced, not merged."""
    project = directory / "sfdx-project.json"
    try:
        if project.exists() and json.loads(project.read_text(encoding="utf-8")).get("name") != PROJECT_NAME:
            raise SflsError(
                f"{directory} holds another Salesforce DX project ({project}); give `sfls import schema --out` "
                "an empty or new directory"
            )
        for generated in ("objects", "tabs", "permissionsets"):
            shutil.rmtree(directory / SOURCE / generated, ignore_errors=True)
        for relative, content in files.items():
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SflsError(
            f"cannot write the Salesforce DX source to {directory}: {reason}; give `sfls import schema --out` "
            "a directory you can write to"
        ) from None


README = f"""# sfls Salesforce schema (Salesforce DX source)

Written by `sfls import schema --out DIR`: every custom object, custom field, tab and the permission set the
sfls integration needs. Regenerate it after changing `importer.targets`, `mappings` or `salesforce.fields`.

Deploy it with the Salesforce CLI (`npm install --global @salesforce/cli`), logged in to the org as an admin
(`sf org login web --alias <alias>`), from this directory:

    sf project deploy start --source-dir force-app --target-org <alias>
    sf org assign permset --name {PERMISSION_SET} --target-org <alias> --on-behalf-of <sfls integration username>

The permission set `{PERMISSION_SET}` grants the sfls integration user create, read, edit and delete on
the custom objects, read and edit on every custom field (master-detail fields follow their parent's access),
and the LogiSense Requests tab.
"""
