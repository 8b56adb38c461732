"""The emulator loads its schema from Salesforce DX source: `POST /__admin/schema-source` and `--schema-source`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.salesforce.__main__ import parse_args, schema_file
from devstack.salesforce.schema import Schema
from devstack.salesforce.source import SourceError, load_source
from shared.salesforce_view import ERROR_OBJECT, REQUEST_OBJECT
from shared.settings import Settings
from tests.fixtures.salesforce import SalesforceEmulator
from tests.fixtures.schema import deploy_schema, write_schema

ARGS = ["--client-id", "c", "--client-secret", "s", "--username", "u", "--password", "p"]


@pytest.mark.integration
def test_the_admin_route_deploys_the_source_sfls_writes(salesforce_emulator: SalesforceEmulator) -> None:
    """The objects and fields of `sfls import schema --out` become describable, as in the org."""
    added = deploy_schema(salesforce_emulator, Settings(salesforce=salesforce_emulator.settings()))
    assert {REQUEST_OBJECT, ERROR_OBJECT, f"{ERROR_OBJECT}.Request__c", "Account.LogiSense_Sync_Status__c"} <= set(
        added
    )
    rest = salesforce_emulator.rest()
    described = {f["name"]: f for f in rest.describe(ERROR_OBJECT)["fields"]}
    assert described["Request__c"]["referenceTo"] == [REQUEST_OBJECT]
    assert described["Request__c"]["relationshipName"] == "Request__r"
    assert described["Name"]["length"] == 80
    account = {f["name"]: f for f in rest.describe("Account")["fields"]}
    assert account["LogiSense_Sync_Status__c"]["restrictedPicklist"] is True


@pytest.mark.integration
def test_a_folder_without_source_is_refused(salesforce_emulator: SalesforceEmulator, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"400.*no objects/ folder"):
        salesforce_emulator.admin("POST", "schema-source", {"path": str(tmp_path)})
    with pytest.raises(AssertionError, match=r"400.*'path' is required"):
        salesforce_emulator.admin("POST", "schema-source", {})


def test_bad_xml_names_its_file(tmp_path: Path) -> None:
    fields = tmp_path / "objects" / "Account" / "fields"
    fields.mkdir(parents=True)
    (fields / "Broken__c.field-meta.xml").write_text("<CustomField>")
    with pytest.raises(SourceError, match=r"Broken__c\.field-meta\.xml: not readable metadata XML"):
        load_source(tmp_path)


def test_the_command_line_option_starts_the_emulator_with_the_source(tmp_path: Path) -> None:
    """`--schema-source DIR` becomes the start-up schema file, in the state directory."""
    source = write_schema(Settings(), tmp_path / "sfls-schema")
    args = parse_args([*ARGS, "--schema-source", str(source), "--state-dir", str(tmp_path / "state")])
    path = schema_file(args)
    assert path == tmp_path / "state" / "schema-source.json"
    assert path is not None
    schema = Schema()
    schema.extend(json.loads(path.read_text()))
    assert schema.get(REQUEST_OBJECT) is not None
    assert parse_args(ARGS).schema_source is None
