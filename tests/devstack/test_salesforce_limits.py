"""The emulator's org limits (devstack/salesforce/limits.py), driven with simple-salesforce, unmodified.

Allocations over a rolling window, the `Sforce-Limit-Info` header, `GET /limits`, the 403 REQUEST_LIMIT_EXCEEDED of
an exhausted allocation, what Bulk API 2.0 jobs and event deliveries spend, and `/__admin/limits`.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceRefusedRequest

from devstack.salesforce.limits import DEFAULTS, Limits
from tests.fixtures.salesforce import SalesforceEmulator
from tests.waiting import wait_until

INTEGRATION = pytest.mark.integration
POLL = 0  # simple-salesforce's bulk2 `wait`
REFUSED = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


def _limits(emulator: SalesforceEmulator) -> dict[str, Any]:
    snapshot: dict[str, Any] = emulator.admin("GET", "limits")
    return snapshot


def _used(emulator: SalesforceEmulator, name: str) -> int:
    return int(_limits(emulator)["limits"][name]["used"])


def _raw(sf: Salesforce, method: str, url: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {sf.session_id}", **kwargs.pop("headers", {})}
    return sf.session.request(method, url, headers=headers, timeout=10, **kwargs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- the model, without a server -------------------------------------------------------------------------
def test_spending_is_bucketed_per_second_and_frees_after_the_window() -> None:
    """A second's calls share one bucket; they free once window_seconds have passed since that second ended."""
    clock = FakeClock()
    limits = Limits(clock)
    limits.configure(window_seconds=10, maximum={"DailyApiRequests": 1500})
    for _ in range(1000):
        assert limits.spend("DailyApiRequests")
    clock.now += 5
    assert limits.spend("DailyApiRequests", 500)
    assert len(limits.allocations["DailyApiRequests"].buckets) == 2
    assert limits.spend("DailyApiRequests") is False
    assert (limits.remaining("DailyApiRequests"), limits.refused["DailyApiRequests"]) == (0, 1)
    clock.now += 6  # the first second ended 11 s ago: its 1000 calls free, the later 500 do not
    assert limits.remaining("DailyApiRequests") == 1000
    clock.now += 5
    assert limits.snapshot()["limits"]["DailyApiRequests"] == {"max": 1500, "used": 0, "remaining": 1500}


def test_consume_counts_up_to_max_and_the_rest_as_refused() -> None:
    limits = Limits(FakeClock())
    limits.configure(maximum={"DailyDeliveredPlatformEvents": 3})
    assert limits.consume("DailyDeliveredPlatformEvents", 2) == 2
    assert limits.consume("DailyDeliveredPlatformEvents", 4) == 1
    assert limits.remaining("DailyDeliveredPlatformEvents") == 0
    assert limits.refused["DailyDeliveredPlatformEvents"] == 3


# ---- REST: header, /limits, exhaustion, window -----------------------------------------------------------
@INTEGRATION
def test_every_rest_answer_carries_the_usage_header(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """Sforce-Limit-Info counts this call; simple-salesforce reads it into api_usage. The token call is free."""
    sf.query("SELECT Id FROM Account")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (1, 100_000)
    account = sf.Account
    account.create({"Name": "Counted"})
    assert account.api_usage["api-usage"].used == 2
    missing = _raw(sf, "GET", sf.base_url + "sobjects/Nope/describe")  # errors carry it too, and spend
    assert missing.status_code == 404
    assert missing.headers["Sforce-Limit-Info"] == "api-usage=3/100000"
    salesforce_emulator.password_grant()
    salesforce_emulator.admin("GET", "counters")
    assert _used(salesforce_emulator, "DailyApiRequests") == 3


@INTEGRATION
def test_limits_resource_in_the_real_shape(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """GET /limits: {name: {Max, Remaining}}, this call counted; Remaining never below 0."""
    sf.query("SELECT Id FROM Account")
    assert sf.limits() == {
        "DailyApiRequests": {"Max": 100_000, "Remaining": 99_998},
        "DailyBulkApiBatches": {"Max": 15_000, "Remaining": 15_000},
        "DailyBulkV2QueryJobs": {"Max": 10_000, "Remaining": 10_000},
        "DailyDeliveredPlatformEvents": {"Max": 50_000, "Remaining": 50_000},
    }
    salesforce_emulator.admin(
        "POST", "limits", {"max": {"DailyBulkApiBatches": 10}, "used": {"DailyBulkApiBatches": 15}}
    )
    assert sf.limits()["DailyBulkApiBatches"] == {"Max": 10, "Remaining": 0}


@INTEGRATION
def test_exhausted_requests_are_refused_unserved(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """With nothing remaining: 403 REQUEST_LIMIT_EXCEEDED, nothing done or spent; token and admin calls still work."""
    salesforce_emulator.admin("POST", "limits", {"max": {"DailyApiRequests": 3}})
    for _ in range(3):
        sf.query("SELECT Id FROM Account")
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf.Account.create({"Name": "Never"})
    assert refused.value.status == 403
    assert refused.value.content == REFUSED
    raw = _raw(sf, "GET", sf.base_url + "limits")
    assert (raw.status_code, raw.json(), raw.headers["Sforce-Limit-Info"]) == (403, REFUSED, "api-usage=3/3")
    assert salesforce_emulator.records("Account") == []
    assert salesforce_emulator.password_grant()["access_token"]
    snapshot = _limits(salesforce_emulator)
    assert snapshot["limits"]["DailyApiRequests"] == {"max": 3, "used": 3, "remaining": 0}
    assert snapshot["refused"]["DailyApiRequests"] == 2
    assert salesforce_emulator.counters()["errors"]["REQUEST_LIMIT_EXCEEDED"] == 2


@INTEGRATION
def test_the_window_frees_spent_calls(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """Usage set through the admin API counts as spent now and frees after window_seconds."""
    salesforce_emulator.admin(
        "POST", "limits", {"window_seconds": 2, "max": {"DailyApiRequests": 500}, "used": {"DailyApiRequests": 500}}
    )
    with pytest.raises(SalesforceRefusedRequest):
        sf.query("SELECT Id FROM Account")

    def attempt() -> int | str:
        try:
            return int(sf.query("SELECT Id FROM Account")["totalSize"])
        except SalesforceRefusedRequest as error:
            return str(error.content)

    wait_until(attempt, 10, "the window to free the spent calls", until=lambda r: r == 0, every=0.2)
    assert sf.api_usage["api-usage"].used == 1
    assert _limits(salesforce_emulator)["window_seconds"] == 2


# ---- Bulk API 2.0 ---------------------------------------------------------------------------------------
@INTEGRATION
def test_ingest_jobs_spend_a_batch_per_ten_thousand_rows(
    sf: Salesforce, salesforce_emulator: SalesforceEmulator
) -> None:
    """A small job spends 1 batch, one of 10,001 rows 2 (when closed); with none left creation is refused."""
    (summary,) = sf.bulk2.Account.insert(records=[{"Name": "A"}, {"Name": "B"}], wait=POLL)
    assert summary["numberRecordsProcessed"] == 2
    assert _used(salesforce_emulator, "DailyBulkApiBatches") == 1
    before = _used(salesforce_emulator, "DailyApiRequests")
    salesforce_emulator.tune(bulk_chunk_delay_ms=1000)  # processing stays slow; the job is aborted right away
    jobs = sf.bulk2_url + "ingest"
    job = _raw(sf, "POST", jobs, json={"object": "Account", "operation": "insert"}).json()
    csv_text = "Name\n" + "".join(f"Row {i}\n" for i in range(10_001))
    upload = _raw(sf, "PUT", f"{jobs}/{job['id']}/batches", data=csv_text, headers={"Content-Type": "text/csv"})
    assert upload.status_code == 201
    assert _used(salesforce_emulator, "DailyBulkApiBatches") == 1  # counted at close, not before
    assert _raw(sf, "PATCH", f"{jobs}/{job['id']}", json={"state": "UploadComplete"}).ok
    assert _raw(sf, "PATCH", f"{jobs}/{job['id']}", json={"state": "Aborted"}).ok
    assert _used(salesforce_emulator, "DailyBulkApiBatches") == 3
    assert _used(salesforce_emulator, "DailyApiRequests") == before + 4
    salesforce_emulator.admin("POST", "limits", {"max": {"DailyBulkApiBatches": 3}})
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf.bulk2.Account.insert(records=[{"Name": "C"}], wait=POLL)
    assert refused.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert "DailyBulkApiBatches" in refused.value.content[0]["message"]
    assert _limits(salesforce_emulator)["refused"]["DailyBulkApiBatches"] == 1


@INTEGRATION
def test_query_jobs_spend_one_each(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """Each Bulk 2.0 query job created spends one DailyBulkV2QueryJobs; with none left creation is refused."""
    salesforce_emulator.seed("Account", [{"Name": "Seeded"}])
    assert len(list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=POLL))) == 1
    assert _used(salesforce_emulator, "DailyBulkV2QueryJobs") == 1
    salesforce_emulator.admin("POST", "limits", {"max": {"DailyBulkV2QueryJobs": 1}})
    with pytest.raises(SalesforceRefusedRequest) as refused:
        list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=POLL))
    assert refused.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert "DailyBulkV2QueryJobs" in refused.value.content[0]["message"]
    snapshot = _limits(salesforce_emulator)
    assert snapshot["limits"]["DailyBulkV2QueryJobs"] == {"max": 1, "used": 1, "remaining": 0}
    assert snapshot["refused"]["DailyBulkV2QueryJobs"] == 1


# ---- event delivery (CometD) ---------------------------------------------------------------------------
class Bayeux:
    """A minimal long-polling client (as in test_salesforce_cometd.py), subscribed to Account changes."""

    def __init__(self, emulator: SalesforceEmulator, token: str) -> None:
        self.token, self.client_id = token, ""
        self.http = requests.Session()  # a client of its own: its own BAYEUX_BROWSER cookie
        self.http.verify, self.http.trust_env = emulator.ca_file, False
        self.url = f"{emulator.instance_url}/cometd/62.0"
        handshake = self.send(
            {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
        )
        self.client_id = handshake[0]["clientId"]
        self.connect()  # the first connect after a handshake answers at once
        assert self.send({"channel": "/meta/subscribe", "subscription": "/data/AccountChangeEvent"})[0]["successful"]

    def send(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        if self.client_id:
            message["clientId"] = self.client_id
        response = self.http.post(
            self.url, json=[message], headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        assert response.status_code == 200
        body: list[dict[str, Any]] = response.json()
        return body

    def connect(self) -> list[dict[str, Any]]:
        """The events of one connect reply (the reply itself left out)."""
        return [m for m in self.send({"channel": "/meta/connect", "connectionType": "long-polling"}) if "data" in m]

    def close(self) -> None:
        self.http.close()


@INTEGRATION
def test_each_delivered_event_spends_per_subscriber(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """Two CometD clients get one change event each: 2 spent. Beyond Max events still flow, counted as refused."""
    clients = [Bayeux(salesforce_emulator, sf.session_id) for _ in range(2)]
    try:
        sf.Account.create({"Name": "Delivered"})
        assert [len(client.connect()) for client in clients] == [1, 1]
        assert _used(salesforce_emulator, "DailyDeliveredPlatformEvents") == 2
        salesforce_emulator.admin("POST", "limits", {"max": {"DailyDeliveredPlatformEvents": 3}})
        sf.Account.create({"Name": "Over"})
        assert [len(client.connect()) for client in clients] == [1, 1]
        snapshot = _limits(salesforce_emulator)
        assert snapshot["limits"]["DailyDeliveredPlatformEvents"] == {"max": 3, "used": 3, "remaining": 0}
        assert snapshot["refused"]["DailyDeliveredPlatformEvents"] == 1
    finally:
        for client in clients:
            client.close()


# ---- admin API -----------------------------------------------------------------------------------------
@INTEGRATION
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"max": {"DailyNope": 5}}, "DailyNope"),
        ({"used": {"Nope": 1}}, "Nope"),
        ({"window_seconds": 0}, "window_seconds"),
        ({"window_seconds": "soon"}, "window_seconds"),
        ({"max": {"DailyApiRequests": -1}}, "DailyApiRequests"),
        ({"used": {"DailyApiRequests": 1.5}}, "DailyApiRequests"),
        ({"max": {"DailyApiRequests": True}}, "DailyApiRequests"),
        ({"max": [1]}, "max"),
        ({"used": None}, "used"),
        ({"maximum": {"DailyApiRequests": 1}}, "maximum"),
    ],
)
def test_bad_admin_limits_are_400_naming_the_key(
    salesforce_emulator: SalesforceEmulator, body: dict[str, Any], named: str
) -> None:
    """A bad configuration is refused as a whole: 400 with a message naming the key; nothing changes."""
    response = salesforce_emulator.http.post(
        f"{salesforce_emulator.admin_url}/limits", json={"window_seconds": 7, **body}, timeout=10
    )
    assert response.status_code == 400
    assert named in response.json()["error"]
    assert _limits(salesforce_emulator)["window_seconds"] == 86_400


@INTEGRATION
def test_admin_limits_shape_and_reset_restores_defaults(salesforce_emulator: SalesforceEmulator) -> None:
    """POST answers the GET shape; reset brings back every default Max, the 24 h window and no usage."""
    changed = salesforce_emulator.admin(
        "POST", "limits", {"window_seconds": 5, "max": {"DailyApiRequests": 500}, "used": {"DailyApiRequests": 480}}
    )
    assert changed["window_seconds"] == 5
    assert changed["limits"]["DailyApiRequests"] == {"max": 500, "used": 480, "remaining": 20}
    salesforce_emulator.admin("POST", "reset")
    assert _limits(salesforce_emulator) == {
        "window_seconds": 86_400,
        "limits": {name: {"max": top, "used": 0, "remaining": top} for name, top in DEFAULTS.items()},
        "refused": dict.fromkeys(DEFAULTS, 0),
    }
