"""`make demo`'s scenario, run non-interactively: the final states are what the narration claims."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from devstack.demo import MISSING_BILL_GROUP, Demo
from devstack.kafka import default_cache_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_ends_all_in_sync(tmp_path: Path) -> None:
    """The scripted scenario ends with LogiSense equal to Salesforce, the fix replayed, and everything stopped."""
    output = io.StringIO()
    cache_dir = default_cache_dir()
    demo = Demo(Console(file=output, width=160), tmp_path / "demo", cache_dir)
    try:
        ok = demo.run()
    finally:
        demo.stop()
    text = output.getvalue()
    assert ok, text[-4000:]
    assert "ALL IN SYNC" in text
    assert "2 won opportunities priced in one LogiSense price plan" in text  # the quote-to-cash checks passed
    _sf_accounts, sf_contacts, ls_accounts = demo.final
    by_name = {a["name"]: a for a in ls_accounts}
    assert set(by_name) == {"Northwind Traders", "Contoso Ltd", "Acme Holdings", "Acme East", "Acme West", "Globex"}
    assert by_name["Acme East"]["accountStatusTypeName"] == "Suspended"
    assert by_name["Acme East"]["parentAccountId"] == by_name["Acme Holdings"]["identity"]
    assert [c["lastName"] for c in by_name["Acme West"]["contacts"]] == ["Oh"]
    assert by_name["Globex"]["billGroupName"] == MISSING_BILL_GROUP
    assert "MappingError" in text  # the dead letter was shown with its reason before the fix
    assert "Changes the listener ignored: 1 not_trigger" in text
    assert len([c for c in sf_contacts if not c.get("IsDeleted")]) == 3
    assert all(service.process is not None and service.process.poll() is not None for service in demo.services)
    assert demo.stack.status() == {"kafka": "stopped", "salesforce": "stopped", "logisense": "stopped"}
