"""Quote to cash: won opportunities through the syncer's automatic push (`SFLS_OPPORTUNITY__AUTO_PUSH=true`).

Default scale: 1,000 opportunities at stage 'Closed Won' on the "LogiSense Price Book", 3 lines each, over
500 accounts (2 each) that LogiSense already has (Account with `sfdcid` = the Salesforce AccountId), and 4
LogiSense packages (one monthly frequency, 2 services, USD, recurring and one-time pricing rules) with one
Salesforce product each. Salesforce is seeded through `POST /__admin/records` (no CDC), LogiSense through
its REST API before any latency is added. One Opportunity ChangeEvent per opportunity (keyed by the
AccountId, as the listener publishes it) goes to `<prefix>.changes` before the syncer starts; the
LogiSense emulator adds 20 ms to every request, as in bench_syncer. The syncer runs as its own process
(`sfls syncer`, default settings but auto_push on and one batch: interval 0.1 min, max batch = the events)
and the clock stops when its consumer group has committed every event. Every opportunity must end
`Pushed` with its 3 x 2 price plan entries in LogiSense, or the benchmark fails.

Reported: wall time, opportunities/s, LogiSense calls, writes and reads per opportunity (emulator
counters, logins excluded), Salesforce calls per opportunity (emulator counters). Floor, same run,
same emulator and latency: the syncer's own LogiSense writes (as counted) made directly with httpx by
a separate process, at the syncer's default concurrency (sync.concurrency, 16 accounts at a time, one
account's writes in order: its product codes, its plan, one PATCH of the entries per opportunity), on
accounts of their own. A push cannot write less, so the writes per opportunity are the floor of the
calls per opportunity.

Smaller runs: `SFLS_BENCH_OPPORTUNITIES=50 python -m bench opportunity` (accounts = opportunities / 2
unless SFLS_BENCH_OPPORTUNITY_ACCOUNTS is set). Kafka: KAFKA_BOOTSTRAP_SERVERS when set, otherwise a
broker started for the run; the emulators run in this process (threads), the syncer and the floor in
their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.bench_syncer import CONCURRENCY, LATENCY_MS, LS, _admin, emulator_stack, syncer_env
from bench.common import LOGISENSE_API, Stopwatch, in_own_process, logisense_http, row
from devstack.process import ServiceProcess
from devstack.salesforce.sales import STANDARD_BOOK_ID
from devstack.tls import LocalCA
from shared import kafka
from shared.events import ChangeEvent, ChangeType, Entity, make_event_id
from shared.kafka_reader import committed_records
from shared.logisense import LogisenseClient
from shared.logisense_wire import first_instance
from shared.retry import RetryPolicy
from shared.settings import KafkaSettings, LogisenseSettings

NAME = "opportunity push"
OPPORTUNITIES = 1_000
ACCOUNTS = 500
LINES = 3  # per opportunity, each of another package
PACKAGES = 4
SERVICES = (1, 2)  # catalogue services of every package
RECURRING, ONE_TIME = 40.0, 10.0  # USD per service, the catalogue's pricing rules
LIST_PRICE, SALES_PRICE = 100.0, 80.0
USD = 1
BOOK = "LogiSense Price Book"


@dataclass(frozen=True)
class Package:
    frequency: int
    currency: int  # Package/Currency identity
    services: tuple[int, ...]  # Package/Service identities


@dataclass(frozen=True)
class FloorJob:
    """What the floor process needs (pickled to it)."""

    ls_url: str
    ca_file: str
    accounts: list[int]  # LogiSense accounts of its own
    packages: list[Package]
    opportunities_n: int
    code_creates: int  # the syncer's, as counted
    patches: int


def _sizes() -> tuple[int, int]:
    opportunities = int(os.environ.get("SFLS_BENCH_OPPORTUNITIES", str(OPPORTUNITIES)))
    default_accounts = ACCOUNTS if opportunities == OPPORTUNITIES else max(1, opportunities // 2)
    accounts = int(os.environ.get("SFLS_BENCH_OPPORTUNITY_ACCOUNTS", str(default_accounts)))
    return opportunities, min(accounts, opportunities)


def _fast_client(settings: LogisenseSettings) -> LogisenseClient:
    return LogisenseClient(settings, retry=RetryPolicy(max_attempts=5, base_seconds=0.05))


async def _make_packages(settings: LogisenseSettings) -> list[Package]:
    """PACKAGES packages as tests/services/opportunity/world.py makes one: a monthly frequency, USD, 2 services."""
    made: list[Package] = []
    async with _fast_client(settings) as client:
        await client.login()
        for n in range(PACKAGES):
            body = {"name": f"Bench Fibre {n}", "isActive": True, "start": "2024-01-01T00:00:00Z"}
            package = await client.create("Package", body)
            children = {
                "frequencies": [{"name": f"Bench {n} Monthly", "frequency": 1, "frequencyTypeId": 3, "isActive": True}],
                "currencies": [{"currencyId": USD}],
                "services": [{"serviceId": s} for s in SERVICES],
            }
            await client.patch("Package", package["identity"], children)
            [frequency] = await client.search("Package/Frequency", [("packageId", "eq", package["identity"])])
            [currency] = await client.search("Package/Currency", [("packageId", "eq", package["identity"])])
            services = await client.search("Package/Service", [("packageId", "eq", package["identity"])])
            services.sort(key=lambda s: s["serviceId"])
            for service in services:
                rule = {
                    "packageFrequencyId": frequency["identity"],
                    "serviceId": service["serviceId"],
                    "currencyId": USD,
                }
                await client.create("PricingRule", {**rule, "chargeType": "recurring", "amount": RECURRING})
                await client.create("PricingRule", {**rule, "chargeType": "oneTime", "amount": ONE_TIME})
            made.append(Package(frequency["identity"], currency["identity"], tuple(s["identity"] for s in services)))
    return made


async def _make_accounts(settings: LogisenseSettings, sfdcids: list[str | None]) -> list[int]:
    """One LogiSense account per entry (with `sfdcid` unless None); their identities."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    async with _fast_client(settings) as client:
        await client.login()

        async def one(n: int, sfdcid: str | None) -> int:
            body: dict[str, Any] = {
                "name": f"Bench Customer {n:06d}",
                "accountTypeId": 1,
                "accountStatusTypeId": 1,
                "billGroupId": 1,
                "currencyId": USD,
            }
            if sfdcid is not None:
                body["sfdcid"] = sfdcid
            async with semaphore:
                return int((await client.create("Account", body))["identity"])

        return list(await asyncio.gather(*(one(n, s) for n, s in enumerate(sfdcids))))


def _seed_salesforce(
    http: httpx.Client, sf_url: str, packages: list[Package], opportunities_n: int, accounts_n: int
) -> tuple[list[str], list[tuple[str, str]]]:
    """Accounts, the book, products and entries, won opportunities with their lines; (account ids,
    [(opportunity id, account id)]). Admin seeding skips the sales rules, so the derived fields are given."""
    accounts = [{"Name": f"Bench Account {i:06d}", "Type": "Customer"} for i in range(accounts_n)]
    account_ids: list[str] = _admin(http, sf_url, "POST", "records", {"sobject": "Account", "records": accounts})["ids"]
    [book_id] = _admin(
        http,
        sf_url,
        "POST",
        "records",
        {"sobject": "Pricebook2", "records": [{"Name": BOOK, "IsActive": True, "IsStandard": False}]},
    )["ids"]
    products = [
        {
            "Name": f"Bench Fibre {n}",
            "ProductCode": f"BF{n}",
            "IsActive": True,
            "LogiSense_Id__c": str(package.frequency),
        }
        for n, package in enumerate(packages)
    ]
    product_ids = _admin(http, sf_url, "POST", "records", {"sobject": "Product2", "records": products})["ids"]
    entries = [
        {
            "Pricebook2Id": book,
            "Product2Id": product_id,
            "Name": product["Name"],
            "ProductCode": product["ProductCode"],
            "UnitPrice": LIST_PRICE,
            "IsActive": True,
            "UseStandardPrice": False,
        }
        for book in (STANDARD_BOOK_ID, book_id)
        for product_id, product in zip(product_ids, products, strict=True)
    ]
    entry_ids = _admin(http, sf_url, "POST", "records", {"sobject": "PricebookEntry", "records": entries})["ids"]
    book_entries = entry_ids[len(product_ids) :]  # the custom book's, in product order
    opportunities = [
        {
            "Name": f"Bench deal {n:06d}",
            "AccountId": account_ids[n % accounts_n],
            "StageName": "Closed Won",
            "IsClosed": True,
            "IsWon": True,
            "Probability": 100,
            "ForecastCategory": "Closed",
            "ForecastCategoryName": "Closed",
            "CloseDate": "2026-11-30",
            "Pricebook2Id": book_id,
            "HasOpportunityLineItem": True,
            "Amount": SALES_PRICE * LINES,
        }
        for n in range(opportunities_n)
    ]
    opportunity_ids: list[str] = _admin(
        http, sf_url, "POST", "records", {"sobject": "Opportunity", "records": opportunities}
    )["ids"]
    lines = [
        {
            "OpportunityId": opportunity_id,
            "PricebookEntryId": book_entries[(n + k) % PACKAGES],
            "Product2Id": product_ids[(n + k) % PACKAGES],
            "Quantity": 1,
            "UnitPrice": SALES_PRICE,
            "ListPrice": LIST_PRICE,
            "Subtotal": SALES_PRICE,
            "TotalPrice": SALES_PRICE,
        }
        for n, opportunity_id in enumerate(opportunity_ids)
        for k in range(LINES)
    ]
    for start in range(0, len(lines), 5_000):
        _admin(
            http, sf_url, "POST", "records", {"sobject": "OpportunityLineItem", "records": lines[start : start + 5_000]}
        )
    pairs = [(o, str(opportunities[n]["AccountId"])) for n, o in enumerate(opportunity_ids)]
    return account_ids, pairs


def run() -> list[dict[str, Any]]:
    opportunities_n, accounts_n = _sizes()
    with emulator_stack("sfls-bench-opportunity-") as stack:
        return _measure(
            opportunities_n=opportunities_n,
            accounts_n=accounts_n,
            state=stack.state,
            ca=stack.ca,
            sf_url=stack.sf_url,
            ls_url=stack.ls_url,
            bootstrap=stack.bootstrap,
            http=stack.http,
        )


def _measure(
    *,
    opportunities_n: int,
    accounts_n: int,
    state: Path,
    ca: LocalCA,
    sf_url: str,
    ls_url: str,
    bootstrap: str,
    http: httpx.Client,
) -> list[dict[str, Any]]:
    ls_settings = LogisenseSettings(base_url=ls_url, ca_file=str(ca.ca_file), timeout_seconds=60, **LS)
    _admin(http, ls_url, "POST", "reset", {"seed": 1, "catalogue_size": 50})
    packages = asyncio.run(_make_packages(ls_settings))
    account_ids, pairs = _seed_salesforce(http, sf_url, packages, opportunities_n, accounts_n)
    asyncio.run(_make_accounts(ls_settings, list(account_ids)))
    floor_accounts = asyncio.run(_make_accounts(ls_settings, [None] * accounts_n))  # the floor's own

    events = [
        ChangeEvent(
            event_id=make_event_id(f"bench-opportunity:{n}", account_id),
            entity=Entity.OPPORTUNITY,
            change_type=ChangeType.UPDATE,
            record_id=opportunity_id,
            account_id=account_id,
            commit_timestamp=datetime.now(UTC),
            opportunity_id=opportunity_id,
        )
        for n, (opportunity_id, account_id) in enumerate(pairs)
    ]
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    kafka_settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=12)
    topics = kafka.Topics(prefix)
    kafka.ensure_topics(
        kafka_settings,
        [s for s in topics.specs(kafka_settings) if s.name in {topics.changes, topics.changes_dlt, topics.requests}],
    )
    tuning: dict[str, Any] = {"linger.ms": 50, "batch.size": 1_000_000}
    producer = kafka.producer(kafka_settings, **tuning)
    kafka.produce_and_flush(
        producer, topics.changes, ((e.key, e.to_bytes(), list(e.headers())) for e in events), timeout=120
    )

    _admin(http, ls_url, "POST", "faults", {"latency_ms": LATENCY_MS})
    _admin(http, ls_url, "DELETE", "counters")
    sf_before = _sf_calls(http, sf_url)
    env = syncer_env(
        state=state,
        ca=ca,
        sf_url=sf_url,
        ls_url=ls_url,
        bootstrap=bootstrap,
        prefix=prefix,
        SFLS_SYNC__MAX_BATCH_EVENTS=str(max(len(events), 1)),  # the batch closes as soon as it holds them all
        SFLS_OPPORTUNITY__AUTO_PUSH="true",
    )
    watch = Stopwatch()
    group = f"{prefix}.syncer"
    with ServiceProcess.sfls("syncer", env=env, log=state / "syncer.log") as syncer:  # SIGTERM at the end
        deadline = time.monotonic() + 900
        while committed_records(kafka_settings, group, topics.changes) < len(events):
            syncer.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the syncer did not finish within 15 minutes; see {syncer.log}")
            time.sleep(0.25)
        wall = watch.seconds
    sf_calls = _sf_calls(http, sf_url) - sf_before
    counters = _admin(http, ls_url, "GET", "counters")
    (state / "logisense-counters.json").write_text(json.dumps(counters, indent=1))  # the breakdown, for a look
    requests = [r for r in counters["requests"] if r["resource"] != "Access/Login"]
    calls = sum(r["count"] for r in requests)
    writes = [r for r in requests if r["operation"] in ("create", "update", "patch", "delete")]
    writes_n = sum(r["count"] for r in writes)
    failed = sum(r["count"] for r in requests if int(r["status"]) >= 400)
    _check_pushed(http, sf_url, ls_url, account_ids=set(account_ids), opportunities_n=opportunities_n, state=state)
    by_kind = {(r["resource"], r["method"]): 0 for r in writes}
    for r in writes:
        by_kind[(r["resource"], r["method"])] += r["count"]
    code_creates = by_kind.get(("Account/ProductCode", "POST"), 0)
    plan_creates = by_kind.get(("Account/PricePlan", "POST"), 0)
    patches = by_kind.get(("Account/PricePlan", "PATCH"), 0)
    if code_creates + plan_creates + patches != writes_n:
        raise RuntimeError(f"the syncer made LogiSense writes the floor does not know: {by_kind}")

    # Floor: the same writes, made directly, in a process of its own (not sharing this one's GIL with the emulator).
    job = FloorJob(ls_url, str(ca.ca_file), floor_accounts, packages, opportunities_n, code_creates, patches)
    floor_wall, floor_writes = in_own_process(_floor_process, job)
    if floor_writes != writes_n:
        raise RuntimeError(f"the floor made {floor_writes} writes, the syncer {writes_n}")

    label = (
        f"{opportunities_n:,} won opportunities x {LINES} lines / {accounts_n:,} accounts, "
        f"{LATENCY_MS} ms LogiSense latency; default settings but SFLS_OPPORTUNITY__AUTO_PUSH=true, the path "
        "measured, and SFLS_SYNC__MAX_BATCH_EVENTS = the event count with SFLS_SYNC_INTERVAL_MINUTES=0.1: one batch, "
        "closed as soon as it holds every event"
    )
    floor = f"direct httpx writes, concurrency {CONCURRENCY}"
    result = [
        row(NAME, f"wall time ({label})", wall, "s", baseline=floor, baseline_value=floor_wall, higher_is_better=False),
        row(
            NAME,
            "opportunities per second",
            opportunities_n / wall,
            "opp/s",
            baseline=floor,
            baseline_value=opportunities_n / floor_wall,
        ),
        row(
            NAME,
            "LogiSense calls per opportunity",
            calls / opportunities_n,
            "calls",
            baseline="writes per opportunity (minimum)",
            baseline_value=writes_n / opportunities_n,
            higher_is_better=False,
        ),
        row(NAME, "LogiSense reads per opportunity", (calls - writes_n) / opportunities_n, "calls"),
        row(NAME, "Salesforce calls per opportunity", sf_calls / opportunities_n, "calls"),
    ]
    if failed:
        result.append(row(NAME, "LogiSense calls answered with an error", failed, "calls"))
    return result


def _sf_calls(http: httpx.Client, sf_url: str) -> int:
    """Salesforce REST API calls so far (the emulator's total: token requests and CometD not counted)."""
    return int(_admin(http, sf_url, "GET", "counters")["total"])


def _check_pushed(
    http: httpx.Client, sf_url: str, ls_url: str, *, account_ids: set[str], opportunities_n: int, state: Path
) -> None:
    """Every opportunity Pushed, and LogiSense holding its LINES x services entries."""
    records = _admin(http, sf_url, "GET", "records/Opportunity")["records"]
    statuses: dict[str, int] = {}
    for record in records:
        status = str(record.get("LogiSense_Push_Status__c"))
        statuses[status] = statuses.get(status, 0) + 1
    plans = [p for p in _admin(http, ls_url, "GET", "price_plans") if p.get("sfdcid") in account_ids]
    entries = sum(len(p["entries"]) for p in plans)
    expected = opportunities_n * LINES * len(SERVICES)
    if statuses.get("Pushed", 0) != opportunities_n or entries != expected:
        raise RuntimeError(
            f"not every opportunity was pushed: statuses {statuses}, {entries} of {expected} price plan entries "
            f"({len(plans)} plans); see {state / 'syncer.log'}"
        )


def _floor_process(job: FloorJob) -> tuple[float, int]:
    return asyncio.run(_floor(job))


async def _floor(job: FloorJob) -> tuple[float, int]:
    """The syncer's writes, made directly: per account (CONCURRENCY at a time) its opportunities in order, each
    its code creates, the plan create on the account's first, one PATCH of the entries; (seconds, writes)."""
    packages = job.packages
    codes_per_opportunity = job.code_creates // max(1, job.opportunities_n)
    patches_per_opportunity = job.patches // max(1, job.opportunities_n)
    by_account: dict[int, list[int]] = {}
    for n in range(job.opportunities_n):
        by_account.setdefault(job.accounts[n % len(job.accounts)], []).append(n)
    semaphore = asyncio.Semaphore(CONCURRENCY)
    writes = 0
    async with logisense_http(job.ls_url, job.ca_file, LS) as (http, headers):

        async def write(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            nonlocal writes
            response = await http.request(method, f"/{LOGISENSE_API}/{path}", json=body, headers=headers)
            response.raise_for_status()
            writes += 1
            return first_instance(response.json())

        async def account(account_id: int, numbers: list[int]) -> None:
            async with semaphore:
                plan_id: int | None = None
                for n in numbers:
                    lines = [packages[(n + k) % PACKAGES] for k in range(LINES)]
                    codes = []
                    for k in range(codes_per_opportunity):
                        body = {"name": f"FLOOR-{n}-{k}", "accountId": account_id}
                        codes.append(int((await write("POST", "Account/ProductCode", body))["identity"]))
                    if plan_id is None:
                        body = {
                            "name": "Salesforce",
                            "accountId": account_id,
                            "start": "2026-11-30T00:00:00Z",
                            "isConsolidatedByInvoicer": False,
                        }
                        plan_id = int((await write("POST", "Account/PricePlan", body))["identity"])
                    factor = SALES_PRICE / LIST_PRICE
                    entries = [
                        {
                            "packageServiceId": service,
                            "packageFrequencyId": package.frequency,
                            "packageCurrencyId": package.currency,
                            "recurringCharges": [{"amount": round(RECURRING * factor, 2)}],
                            "oneTimeCharges": [{"amount": round(ONE_TIME * factor, 2)}],
                            "accountProductCodeId": code,
                        }
                        for package, code in zip(lines, codes, strict=False)
                        for service in package.services
                    ]
                    for _ in range(patches_per_opportunity):
                        await write("PATCH", f"Account/PricePlan/{plan_id}", {"packageServicePricePlan": entries})

        watch = Stopwatch()
        await asyncio.gather(*(account(a, numbers) for a, numbers in by_account.items()))
        return watch.seconds, writes


if __name__ == "__main__":
    for item in run():
        print(item)
