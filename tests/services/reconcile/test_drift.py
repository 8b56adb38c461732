"""The reconcile drift records and metrics (services/reconcile/drift.py, metrics.py), pure logic."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.reconcile.drift import Drift, Kind
from services.reconcile.metrics import record


def test_a_drift_names_the_account_its_repair_resyncs() -> None:
    assert Drift(Kind.ACCOUNT_MISSING, "001A").repair_account == "001A"
    assert Drift(Kind.CONTACT_MISSING, "003C", account_id="001A").repair_account == "001A"
    assert Drift(Kind.CONTACT_ORPHAN, "003C").repair_account is None  # under an account linked to none
    assert Drift(Kind.ACCOUNT_ORPHAN, "001A", 7).repair_account is None  # for a person
    assert Drift(Kind.ACCOUNT_DUPLICATE_LINK, "001A", 7).repair_account is None


def test_the_json_of_a_drift_carries_values_only_for_mismatches() -> None:
    mismatch = Drift(Kind.ACCOUNT_FIELD_MISMATCH, "001A", 7, "name", "Acme", "Acme (by hand)")
    assert mismatch.to_json() == {
        "kind": "account_field_mismatch",
        "salesforce_id": "001A",
        "logisense_id": 7,
        "field": "name",
        "salesforce": "Acme",
        "logisense": "Acme (by hand)",
    }
    assert Drift(Kind.ACCOUNT_MISSING, "001A", detail="Acme").to_json() == {
        "kind": "account_missing",
        "salesforce_id": "001A",
        "detail": "Acme",
    }


def test_every_kind_gets_a_gauge_zero_included() -> None:
    record({"account_missing": 2}, {"salesforce": 5, "logisense": 3}, 2, 1.5)

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    assert value("sfls_reconcile_drift", kind="account_missing") == 2
    assert value("sfls_reconcile_drift", kind="contact_orphan") == 0
    assert value("sfls_reconcile_records", system="salesforce") == 5
    assert value("sfls_reconcile_repaired_accounts") == 2
    assert value("sfls_reconcile_run_duration_seconds") == 1.5
    assert (value("sfls_reconcile_last_run_timestamp_seconds") or 0) > 1_700_000_000
