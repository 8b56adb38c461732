"""`sfls import schema`: one schema of everything sfls needs, rendered as Salesforce DX source an admin deploys."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devstack.salesforce.source import load_source
from services.cli import app
from services.importer.schema import sfls_schema
from services.importer.sfdx import SOURCE, child_relationships, field_xml, render
from shared.errors import ConfigError
from shared.salesforce_view import ERROR_OBJECT, ERROR_PARENT, REQUEST_OBJECT
from shared.settings import MappingSettings, Settings

NS = "{http://soap.sforce.com/2006/04/metadata}"
SCHEMA = sfls_schema(Settings())
FILES = render(SCHEMA, "62.0")


def _xml(path: str) -> ET.Element:
    return ET.fromstring(FILES[f"{SOURCE}/{path}"])  # noqa: S314 - our own rendering


def _elements(root: ET.Element) -> dict[str, str]:
    return {child.tag.removeprefix(NS): (child.text or "") for child in root}


def _custom_fields(schema: dict[str, Any]) -> set[str]:
    names = {f"{o['name']}.{f['name']}" for o in schema["objects"] for f in o["fields"] if f["name"].endswith("__c")}
    return names | {f"{obj}.{f['name']}" for obj, specs in schema["fields"].items() for f in specs}


def test_the_schema_is_the_union_of_what_sfls_reads_and_writes() -> None:
    """The importer's objects, the Requests tab objects, the Account link and trigger fields, the product key."""
    objects = {o["name"] for o in SCHEMA["objects"]}
    assert {"LogiSense_Package__c", "LogiSense_Invoice__c", REQUEST_OBJECT, ERROR_OBJECT} <= objects
    fields = _custom_fields(SCHEMA)
    assert {
        "Account.LogiSense_Status__c",
        "Account.LogiSense_Bill_Group__c",
        "Account.LogiSense_AR_Term__c",
        "Account.Usage_Invoice_Recipient__c",
        "Account.Subscription_Invoice_Recipient__c",
        "Account.LogiSense_Sync_Status__c",
        "Contact.LogiSense_Contact_Type__c",
        "Product2.LogiSense_Id__c",
        "Product2.Package__c",
        "PricebookEntry.LogiSense_Key__c",
        "Opportunity.LogiSense_Push_Status__c",
        "OpportunityLineItem.LogiSense_Product_Code_Id__c",
    } <= fields
    recipient = next(f for f in SCHEMA["fields"]["Account"] if f["name"] == "Usage_Invoice_Recipient__c")
    assert (recipient["type"], recipient["referenceTo"]) == ("reference", "Account")
    assert all(name.split(".")[1].endswith("__c") for name in fields)  # no standard field is redeployed


def test_configured_custom_fields_join_the_schema() -> None:
    """A custom Account field of mappings.account_extensions is deployed with the rest."""
    mappings = MappingSettings.model_validate(
        {"account_extensions": [{"salesforce": "Region__c", "logisense": "region"}]}
    )
    assert "Account.Region__c" in _custom_fields(sfls_schema(Settings(mappings=mappings)))


def test_a_master_detail_field_has_the_metadata_salesforce_requires() -> None:
    """Request Error Log -> Request: MasterDetail, the child relationship, order 0, no required element."""
    root = _xml(f"objects/{ERROR_OBJECT}/fields/{ERROR_PARENT}.field-meta.xml")
    elements = _elements(root)
    assert elements["type"] == "MasterDetail"
    assert (elements["referenceTo"], elements["relationshipName"]) == (REQUEST_OBJECT, "Request_Error_Logs")
    assert (elements["relationshipOrder"], elements["reparentableMasterDetail"]) == ("0", "false")
    assert elements["writeRequiresMasterRead"] == "false"
    assert "required" not in elements
    assert "deleteConstraint" not in elements
    tags = list(elements)
    assert tags[0] == "fullName"
    assert tags[1:] == sorted(tags[1:])
    child = _elements(_xml(f"objects/{ERROR_OBJECT}/{ERROR_OBJECT}.object-meta.xml"))
    parent = _elements(_xml(f"objects/{REQUEST_OBJECT}/{REQUEST_OBJECT}.object-meta.xml"))
    assert (child["sharingModel"], parent["sharingModel"]) == ("ControlledByParent", "ReadWrite")
    assert parent["pluralLabel"] == "LogiSense Requests"
    assert parent["deploymentStatus"] == "Deployed"


def test_a_lookup_gets_a_child_relationship_unique_on_its_parent() -> None:
    """The given childRelationshipName, else the child's plural; never two alike on one parent."""
    lookup = _elements(_xml(f"objects/{REQUEST_OBJECT}/fields/Account__c.field-meta.xml"))
    assert (lookup["type"], lookup["relationshipName"], lookup["deleteConstraint"]) == (
        "Lookup",
        "LogiSense_Requests",
        "SetNull",
    )
    names = child_relationships(SCHEMA)
    assert names[("LogiSense_Package_Currency__c", "Package__c")] == "LogiSense_Package_Currencies"
    parents: dict[tuple[str, str], list[str]] = {}
    for obj, specs in [(o["name"], o["fields"]) for o in SCHEMA["objects"]] + list(SCHEMA["fields"].items()):
        for spec in specs:
            if spec.get("type") == "reference":
                parents.setdefault((spec["referenceTo"], names[(obj, spec["name"])].lower()), []).append(obj)
    assert all(len(children) == 1 for children in parents.values()), parents


def test_a_picklist_lists_its_values_and_is_restricted() -> None:
    root = _xml("objects/Opportunity/fields/LogiSense_Push_Status__c.field-meta.xml")
    assert root.findtext(f"{NS}type") == "Picklist"
    assert root.findtext(f"{NS}valueSet/{NS}restricted") == "true"
    values = root.findall(f"{NS}valueSet/{NS}valueSetDefinition/{NS}value")
    assert [v.findtext(f"{NS}fullName") for v in values] == ["Ready", "Pushed", "Stale", "Withdrawn", "Failed"]
    assert {v.findtext(f"{NS}label") for v in values} == {"Ready", "Pushed", "Stale", "Withdrawn", "Failed"}


def test_an_external_id_is_a_unique_text_field_and_other_types_are_refused() -> None:
    key = _elements(_xml("objects/PricebookEntry/fields/LogiSense_Key__c.field-meta.xml"))
    assert (key["type"], key["externalId"], key["unique"], key["length"]) == ("Text", "true", "true", "40")
    number = _elements(_xml("objects/LogiSense_Request_Error__c/fields/Offset__c.field-meta.xml"))
    assert (number["type"], number["precision"], number["scale"], number["externalId"]) == (
        "Number",
        "18",
        "0",
        "false",
    )
    text = _elements(_xml("objects/Opportunity/fields/LogiSense_Push_Reason__c.field-meta.xml"))
    assert (text["type"], text["length"], text["visibleLines"]) == ("LongTextArea", "32768", "3")
    assert "externalId" not in text
    with pytest.raises(ConfigError, match="only a Text, Number or Email field can be an External ID"):
        field_xml("X__c", {"name": "Notes__c", "type": "textarea", "externalId": True})
    with pytest.raises(ConfigError, match="cannot be required"):
        field_xml(
            "X__c",
            {
                "name": "Owner__c",
                "type": "reference",
                "referenceTo": "Account",
                "required": True,
                "deleteConstraint": "SetNull",
            },
        )
    restricted = {"name": "Owner__c", "type": "reference", "referenceTo": "Account", "required": True}
    # A required lookup without its own constraint gets Restrict, the one Salesforce allows with required.
    restrict = ET.fromstring(field_xml("X__c", restricted, "Xs"))  # noqa: S314 - our own rendering
    assert (restrict.findtext(f"{NS}required"), restrict.findtext(f"{NS}deleteConstraint")) == ("true", "Restrict")
    checkbox = ET.fromstring(field_xml("X__c", {"name": "On__c", "type": "boolean"}))  # noqa: S314
    assert (checkbox.findtext(f"{NS}defaultValue"), checkbox.find(f"{NS}required")) == ("false", None)


def test_the_permission_set_grants_every_object_and_field_but_master_detail() -> None:
    """sfls_Integration: CRUD and View All on each custom object; read/edit on each custom field it may name."""
    root = _xml("permissionsets/sfls_Integration.permissionset-meta.xml")
    granted = {p.findtext(f"{NS}field") for p in root.findall(f"{NS}fieldPermissions")}
    assert f"{ERROR_OBJECT}.{ERROR_PARENT}" not in granted
    assert granted == _custom_fields(SCHEMA) - {f"{ERROR_OBJECT}.{ERROR_PARENT}"}
    objects = {p.findtext(f"{NS}object"): _elements(p) for p in root.findall(f"{NS}objectPermissions")}
    assert set(objects) == {o["name"] for o in SCHEMA["objects"]}
    assert objects[REQUEST_OBJECT]["allowDelete"] == "true"
    assert objects[REQUEST_OBJECT]["viewAllRecords"] == "true"
    tabs = [(t.findtext(f"{NS}tab"), t.findtext(f"{NS}visibility")) for t in root.findall(f"{NS}tabSettings")]
    assert tabs == [(REQUEST_OBJECT, "Visible")]
    tab = _elements(_xml(f"tabs/{REQUEST_OBJECT}.tab-meta.xml"))
    assert tab == {"customObject": "true", "motif": "Custom57: Building"}
    assert [path for path in FILES if "/tabs/" in path] == [f"{SOURCE}/tabs/{REQUEST_OBJECT}.tab-meta.xml"]


def test_the_command_writes_the_project_and_the_emulator_reads_back_the_same_schema(tmp_path: Path) -> None:
    """`sfls import schema --out DIR`: sfdx-project.json, every object and field; the source parses back."""
    out = tmp_path / "schema"
    result = CliRunner().invoke(app, ["import", "schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{len(SCHEMA['objects'])} custom objects" in result.output
    assert "sf project deploy start --source-dir force-app" in result.output
    project = json.loads((out / "sfdx-project.json").read_text())
    assert project["sourceApiVersion"] == Settings().salesforce.api_version
    assert project["packageDirectories"] == [{"path": "force-app", "default": True}]
    assert "sf org assign permset --name sfls_Integration" in (out / "README.md").read_text()
    loaded = load_source(out)
    types = {f"{o['name']}.{f['name']}": f["type"] for o in loaded["objects"] for f in o["fields"][1:]}
    assert all(
        o["fields"][0] == {"name": "Name", "label": o["nameLabel"], "type": "string", "length": 80}
        for o in loaded["objects"]
    )
    types |= {f"{obj}.{f['name']}": f["type"] for obj, specs in loaded["fields"].items() for f in specs}
    wanted = {f"{o['name']}.{f['name']}": f["type"] for o in SCHEMA["objects"] for f in o["fields"]}
    wanted |= {f"{obj}.{f['name']}": f["type"] for obj, specs in SCHEMA["fields"].items() for f in specs}
    assert types == {name: kind for name, kind in wanted.items() if name.endswith("__c")}
    request = next(o for o in loaded["objects"] if o["name"] == REQUEST_OBJECT)
    assert (request["tab"], request["nameLabel"], request["pluralLabel"]) == (True, "Request", "LogiSense Requests")
    error = next(o for o in loaded["objects"] if o["name"] == ERROR_OBJECT)
    parent = next(f for f in error["fields"] if f["name"] == ERROR_PARENT)
    assert parent == {
        "name": ERROR_PARENT,
        "label": "Request",
        "type": "reference",
        "referenceTo": REQUEST_OBJECT,
        "relationshipName": "Request__r",
        "childRelationshipName": "Request_Error_Logs",
        "masterDetail": True,
    }
    attempts = next(f for f in error["fields"] if f["name"] == "Attempts__c")
    assert (attempts["type"], attempts["precision"], attempts["scale"]) == ("int", 6, 0)
    names = [o["name"] for o in loaded["objects"]]
    assert names.index(REQUEST_OBJECT) < names.index(ERROR_OBJECT)  # a master before its details


def test_regenerating_replaces_what_an_earlier_run_wrote(tmp_path: Path) -> None:
    stale = tmp_path / SOURCE / "objects" / "Account" / "fields" / "Gone__c.field-meta.xml"
    assert CliRunner().invoke(app, ["import", "schema", "--out", str(tmp_path)]).exit_code == 0
    stale.write_text("<CustomField/>")
    assert CliRunner().invoke(app, ["import", "schema", "--out", str(tmp_path)]).exit_code == 0
    assert not stale.exists()


def test_json_prints_the_emulator_shape_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["import", "schema", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == SCHEMA
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_directory_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(app, ["import", "schema", "--out", str(blocker / "schema")])
    assert result.exit_code == 1
    assert "cannot write the Salesforce DX source" in result.output
    assert "a directory you can write to" in result.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "sfdx-project.json").write_text(json.dumps({"name": "their-app"}))
    result = CliRunner().invoke(app, ["import", "schema", "--out", str(other)])
    assert result.exit_code == 1
    assert "another Salesforce DX project" in result.output
