"""The Salesforce CLI reads what `sfls import schema --out DIR` writes: the DX source converts to a deployable package.

`sf project convert source` is the CLI's own reading of a DX project (the step `sf project deploy start` takes
before sending the metadata): it fails on a file it cannot place. The package.xml it writes must list every
custom object and custom field of the schema, the Requests tab and the permission set.
"""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.importer.schema import sfls_schema
from services.importer.sfdx import PERMISSION_SET
from shared.salesforce_view import REQUEST_OBJECT
from shared.settings import Settings

pytestmark = pytest.mark.integration  # runs the Salesforce CLI

NS = "{http://soap.sforce.com/2006/04/metadata}"
# No telemetry, no update checks, no writes outside the test's own home.
QUIET = {
    "SF_DISABLE_TELEMETRY": "true",
    "SFDX_DISABLE_TELEMETRY": "true",
    "SF_AUTOUPDATE_DISABLE": "true",
    "SFDX_AUTOUPDATE_DISABLE": "true",
    "SF_SKIP_NEW_VERSION_CHECK": "true",
    "SF_USE_PROGRESS_BAR": "false",
}


def test_the_salesforce_cli_converts_the_schema_source_into_every_object_and_field(sf_cli: str, tmp_path: Path) -> None:
    """`sf project convert source --root-dir force-app --output-dir mdapi` succeeds and lists the whole schema."""
    project = tmp_path / "sfls-schema"
    result = CliRunner().invoke(app, ["import", "schema", "--out", str(project)])
    assert result.exit_code == 0, result.output
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{Path(sf_cli).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        **QUIET,
    }
    converted = subprocess.run(
        [sf_cli, "project", "convert", "source", "--root-dir", "force-app", "--output-dir", "mdapi", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert converted.returncode == 0, converted.stdout + converted.stderr
    assert json.loads(converted.stdout)["status"] == 0
    package = ET.parse(project / "mdapi" / "package.xml").getroot()  # noqa: S314 - written by the CLI just now
    members = {
        types.findtext(f"{NS}name"): {m.text for m in types.findall(f"{NS}members")}
        for types in package.findall(f"{NS}types")
    }
    schema = sfls_schema(Settings())
    objects = {o["name"] for o in schema["objects"]}
    fields = {f"{o['name']}.{f['name']}" for o in schema["objects"] for f in o["fields"] if f["name"].endswith("__c")}
    fields |= {f"{obj}.{f['name']}" for obj, specs in schema["fields"].items() for f in specs}
    assert objects <= members["CustomObject"]
    assert members["CustomField"] == fields
    assert members["CustomTab"] == {REQUEST_OBJECT}
    assert members["PermissionSet"] == {PERMISSION_SET}
    assert package.findtext(f"{NS}version") == Settings().salesforce.api_version
    # The metadata format puts the fields back into their object: the master-detail child has its master.
    error_log = (project / "mdapi" / "objects" / "LogiSense_Request_Error__c.object").read_text()
    assert "<type>MasterDetail</type>" in error_log
    assert "<sharingModel>ControlledByParent</sharingModel>" in error_log
