"""Reconcile benchmark: accounts with a contact each in both emulators, 1 % drifted in known ways, and one
`sfls reconcile` finding every drift.

Per size (10,000 and 100,000 accounts; `SFLS_BENCH_RECONCILE_ACCOUNTS=N` for one other largest size) the
emulators are reset, Salesforce is seeded with the accounts and one contact each (admin API), a RESYNC event per
account goes to `sfls.changes` and one `sfls syncer` process brings LogiSense in step (its time is set-up, not
measured). Then 1 % of the accounts drift through LogiSense's REST API, in four known ways, a quarter each:
an account renamed by hand (`account_field_mismatch` on `name`), a contact renamed (`contact_field_mismatch` on
`lastName`), a contact deleted (`contact_missing`), and a LogiSense account linked to no Salesforce account
(`account_orphan`). `sfls reconcile --format json --output FILE` runs as its own process with default settings
(the emulators add no latency).

Reported: wall time, Salesforce and LogiSense API calls of the reconcile run (emulator counters), its peak RSS
at the largest size against the smallest (goal at most 1.2x: both sides are sorted on disk, services/reconcile/
merge.py), and the drift found against the drift injected: every injected drift found, nothing else reported.

    python -m bench.bench_reconcile
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

from bench.bench_syncer import LS, Stack, _admin, emulator_stack, seed, stack_env, sync_accounts
from bench.common import row, run_measured
from devstack.process import sfls_command
from shared.logisense import LogisenseClient
from shared.retry import RetryPolicy
from shared.settings import LogisenseSettings

BENCH = "reconcile"
SIZES = (10_000, 100_000)
DRIFT_SHARE = 100  # one account in a hundred drifts
ORPHAN_PREFIX = "001ORPHAN"


def _seed(stack: Stack, accounts_n: int) -> tuple[list[str], list[str]]:
    """Salesforce accounts with one contact each: (account ids, contact ids), in the same order."""
    accounts = [
        {
            "Name": f"Reconcile Account {i:06d}",
            "Type": "Customer",
            "LogiSense_Status__c": "Active",
            "LogiSense_Bill_Group__c": "Bill Group 1st",
            "LogiSense_AR_Term__c": "Net 30",
        }
        for i in range(accounts_n)
    ]
    ids = seed(stack.http, stack.sf_url, "Account", accounts)
    contacts = [
        {
            "AccountId": account,
            "FirstName": "Pat",
            "LastName": f"Contact {n:06d}",
            "Email": f"c{n}@example.com",
            "Phone": "+1 555 0100",
            "LogiSense_Contact_Type__c": "Billing",
        }
        for n, account in enumerate(ids)
    ]
    return ids, seed(stack.http, stack.sf_url, "Contact", contacts)


def _sync(stack: Stack, accounts: list[str], prefix: str) -> None:
    """A RESYNC event per account and one `sfls syncer` until its group committed them all (set-up)."""
    sync_accounts(stack, accounts, prefix, stack_env(stack, prefix), origin="bench-reconcile")


async def _drift(stack: Stack, accounts: list[str], contacts: list[str]) -> set[tuple[str, str]]:
    """Drift 1 % of the accounts through LogiSense's REST API; the (kind, Salesforce id) of each drift made."""
    chosen = list(range(0, len(accounts), DRIFT_SHARE))
    quarters = [chosen[i::4] for i in range(4)]
    expected: set[tuple[str, str]] = set()
    settings = LogisenseSettings(base_url=stack.ls_url, ca_file=str(stack.ca.ca_file), timeout_seconds=60, **LS)
    async with LogisenseClient(settings, retry=RetryPolicy(max_attempts=5, base_seconds=0.05)) as client:

        async def by_link(resource: str, field: str, values: list[str]) -> dict[str, dict[str, Any]]:
            """The items whose `field` holds one of the Salesforce ids, by 15-character id (either form held)."""
            found: dict[str, dict[str, Any]] = {}
            for start in range(0, len(values), 50):
                part = values[start : start + 50]
                condition = [{"name": field, "operator": "in", "value": part + [v[:15] for v in part]}]
                for item in await client.search(resource, condition, top=1000):
                    found[str(item[field])[:15]] = item
            return found

        renamed = await by_link("Account", "sfdcid", [accounts[i] for i in quarters[0]])
        for i in quarters[0]:
            await client.update("Account", renamed[accounts[i][:15]]["identity"], {"name": "Renamed by hand"})
            expected.add(("account_field_mismatch", accounts[i]))
        points = await by_link("Contact/Point", "value", [contacts[i] for i in quarters[1] + quarters[2]])
        for i in quarters[1]:
            await client.update("Contact", points[contacts[i][:15]]["contactId"], {"lastName": "Renamed by hand"})
            expected.add(("contact_field_mismatch", contacts[i]))
        for i in quarters[2]:
            await client.delete("Contact", points[contacts[i][:15]]["contactId"])
            expected.add(("contact_missing", contacts[i]))
        template = await client.get("Account", renamed[accounts[quarters[0][0]][:15]]["identity"])
        keep = ("accountTypeId", "accountStatusTypeId", "billGroupId", "currencyId", "arTermId")
        for n, _ in enumerate(quarters[3]):
            orphan = f"{ORPHAN_PREFIX}{n:06d}"[:15]
            body = {**{k: template[k] for k in keep if template.get(k) is not None}, "name": f"Orphan {n}"}
            await client.create("Account", {**body, "sfdcid": orphan})
            expected.add(("account_orphan", orphan))
    return expected


def _calls(stack: Stack) -> tuple[int, int]:
    """(Salesforce REST calls, LogiSense requests) so far, from the emulators' counters."""
    salesforce = _admin(stack.http, stack.sf_url, "GET", "counters")["total"]
    logisense = sum(r["count"] for r in _admin(stack.http, stack.ls_url, "GET", "counters")["requests"])
    return int(salesforce), int(logisense)


def _measure(stack: Stack, accounts_n: int) -> dict[str, float]:
    _admin(stack.http, stack.sf_url, "POST", "reset", {})
    _admin(stack.http, stack.ls_url, "POST", "reset", {"seed": 1, "catalogue_size": 50})
    accounts, contacts = _seed(stack, accounts_n)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    _sync(stack, accounts, prefix)
    expected = asyncio.run(_drift(stack, accounts, contacts))
    env = stack_env(stack, prefix)
    report = stack.state / f"reconcile-{accounts_n}.jsonl"
    before = _calls(stack)
    seconds, rss, code = run_measured(
        [*sfls_command(), "reconcile", "--format", "json", "--output", str(report)], env, stack.state / "reconcile.log"
    )
    after = _calls(stack)
    if code not in (0, 1):
        raise RuntimeError(f"sfls reconcile failed at {accounts_n:,} accounts (exit {code}); see {stack.state}")
    lines = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines() if line.strip()]
    found = {(d["kind"], d.get("salesforce_id", "")) for d in lines[:-1]}
    figures = {
        "seconds": seconds,
        "rss_mib": rss,
        "salesforce_calls": after[0] - before[0],
        "logisense_calls": after[1] - before[1],
        "expected": len(expected),
        "found": len(found & expected),
        "false_positives": len(found - expected),
    }
    print(f"   {accounts_n:,} accounts: {json.dumps(figures)}", flush=True)
    return figures


def run() -> list[dict[str, Any]]:
    largest = int(os.environ.get("SFLS_BENCH_RECONCILE_ACCOUNTS", SIZES[-1]))
    sizes = (min(SIZES[0], largest // 10 or 1), largest)
    with emulator_stack("sfls-bench-reconcile-") as stack:
        small, large = (_measure(stack, n) for n in sizes)
    low, high = sizes
    base = f"same run at {low:,} accounts"
    return [
        row(BENCH, f"wall time, {high:,} accounts with a contact each", large["seconds"], "s"),
        row(
            BENCH,
            f"wall time per 10,000 accounts, {high:,} accounts",
            large["seconds"] * 10_000 / high,
            "s",
            baseline=base,
            baseline_value=small["seconds"] * 10_000 / low,
            higher_is_better=False,
        ),
        row(BENCH, f"Salesforce API calls, {high:,} accounts", large["salesforce_calls"], "calls"),
        row(BENCH, f"LogiSense requests, {high:,} accounts", large["logisense_calls"], "requests"),
        row(
            BENCH,
            f"peak RSS, {high:,} accounts (goal at most 1.2x of {low:,})",
            large["rss_mib"],
            "MiB",
            baseline=base,
            baseline_value=small["rss_mib"],
            higher_is_better=False,
        ),
        row(BENCH, f"peak RSS, {low:,} accounts", small["rss_mib"], "MiB"),
        row(
            BENCH,
            f"injected drift found, {high:,} accounts (1 %, four kinds)",
            large["found"],
            "drifts",
            baseline="drift injected",
            baseline_value=large["expected"],
        ),
        row(BENCH, f"false positives, {high:,} accounts", large["false_positives"], "drifts"),
    ]


if __name__ == "__main__":
    for item in run():
        print(item)
