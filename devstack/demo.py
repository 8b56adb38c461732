"""`make demo`: the whole pipeline on one machine, narrated as it happens.

It starts a private local stack (Kafka and both emulators, on free ports, state in
`.devstack/demo`), deploys sfls's Salesforce schema from its DX source, checks the connections, imports the
catalogue and reference data, starts the listener, the syncer and the Requests tab writer, backfills, then
plays a scripted scenario as a Salesforce user would (through simple-salesforce, without sfls's client tag):
a parent and two child accounts with contacts, a trigger-field change, a non-trigger change, a contact
deletion, an account LogiSense cannot take (a Failed request with its error log on the Salesforce Requests
tab), its fix and its replay from the dead-letter topic (the same request turns Success, the Account gets its
LogiSense id); then quote to cash: a sales rep wins two opportunities on the LogiSense price book and the
syncer (`opportunity.auto_push`) prices them in the account's LogiSense price plan; then a billing admin edits
LogiSense by hand, `sfls reconcile` finds both drifts and `--repair` has the syncer put them right. It ends with
a one-line verdict and exits 1 if the final states differ or a quote-to-cash or Requests tab check fails.
Everything it started is stopped, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import FrameType
from typing import Any, cast

import requests
import yaml
from rich.console import Console
from rich.table import Table
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.format import format_soql

from devstack.compare import differences, load_references
from devstack.kafka import default_cache_dir, free_port
from devstack.process import ServiceProcess, sfls_command
from devstack.stack import Stack
from services.syncer.references import References
from shared import kafka
from shared.events import ChangeEvent
from shared.logisense import LogisenseClient
from shared.settings import KafkaSettings, LogisenseSettings, MappingSettings, ProductExtension, Settings

SYNC_INTERVAL_SECONDS = 2
CONVERGE_SECONDS = 90
MISSING_BILL_GROUP = "Bill Group 30th"
PRICE_BOOK = "LogiSense Price Book"  # importer.price_book_name's default, landed by `sfls import all` (step 3)
DISCOUNT = 0.8  # the discounted line's UnitPrice is 80% of its ListPrice
Row = dict[str, Any]
States = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]
# The mappings of the original package's setup screens, as the demo's sfls.yaml holds them.
POINTS = {"email": "Email", "phone": "Phone", "address": "MailingAddress", "sfdcid": "Id"}
MAPPINGS = MappingSettings(
    contact_points={name: dict(POINTS) for name in ("Billing", "Shipping", "Technical", "Other")},
    product_extensions=(ProductExtension(logisense="family", salesforce="Family"),),
)


class Demo:
    """The scripted scenario; `run()` returns True when LogiSense ends equal to Salesforce."""

    def __init__(self, console: Console, state_dir: Path, cache_dir: Path) -> None:
        self.console = console
        self.state_dir = state_dir.resolve()
        self.stack = Stack(
            state_dir=self.state_dir,
            cache_dir=cache_dir,
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            salesforce_port=free_port(),
            salesforce_pubsub_port=free_port(),
            logisense_port=free_port(),
        )
        self.services: list[ServiceProcess] = []
        self.description: dict[str, Any] = {}
        self.final: States = ([], [], [])
        self.ids: dict[str, str] = {}
        self._sf: Salesforce | None = None
        self._http = requests.Session()
        self._seen_events = 0
        self.metrics_before: dict[str, dict[str, float]] = {}
        self.calls: dict[str, int] = {}
        self._own_requests: dict[str, int] = {}
        self.deals: list[str] = []  # the quote-to-cash opportunities, in the order they were won
        self.discounted_product = ""  # the Product2Id sold at a discount first, at list price later

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
        env.update(
            {
                **self.stack.environment,
                "SFLS_CONFIG": str(self.state_dir / "sfls.yaml"),
                "SFLS_SYNC_INTERVAL_MINUTES": str(SYNC_INTERVAL_SECONDS / 60),
                "SFLS_OBSERVABILITY__LOG_LEVEL": "INFO",
                # The Requests tab lands within a second (default 5 s), like the syncer's short interval here.
                "SFLS_REQUESTS_TAB__FLUSH_SECONDS": "1",
                # Quote to cash's automatic path (README "Quote to cash"): the listener also follows
                # Opportunity and OpportunityLineItem changes, the syncer pushes won opportunities.
                "SFLS_OPPORTUNITY__AUTO_PUSH": "true",
                # The listener's transport: CometD unless the caller asks for the Pub/Sub API
                # (`SFLS_SALESFORCE__TRANSPORT=pubsub make demo`).
                "SFLS_SALESFORCE__TRANSPORT": os.environ.get("SFLS_SALESFORCE__TRANSPORT", "cometd"),
            }
        )
        return env

    def sfls(self, *args: str, show: bool = True, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        """Run `sfls ARGS`; its output when `show`, its last error lines when it exits with a code not in `ok`."""
        result = subprocess.run(
            [*sfls_command(), *args],
            env={**self.env, "COLUMNS": "140"},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if show:
            self.console.print(f"[dim]$ sfls {' '.join(args)}[/]")
            for line in result.stdout.rstrip().splitlines():
                self.console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
        if result.returncode not in ok:
            for line in result.stderr.rstrip().splitlines()[-8:]:
                self.console.print(f"  [red]{line}[/]", highlight=False)
        return result

    def admin(self, system: str, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.description[system]['admin_url']}/{path}"
        response = self._http.request(method, url, json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    @property
    def sf(self) -> Salesforce:
        """simple-salesforce as a Salesforce user would use it (no sfls client tag on the calls)."""
        if self._sf is None:
            sf = self.description["salesforce"]
            session = requests.Session()
            session.verify = sf["ca_file"]
            session.trust_env = False
            form = {
                "grant_type": "password",
                "client_id": sf["client_id"],
                "client_secret": sf["client_secret"],
                "username": sf["username"],
                "password": sf["password"],
            }
            token = session.post(f"{sf['instance_url']}/services/oauth2/token", data=form, timeout=30).json()
            self._sf = Salesforce(
                instance_url=token["instance_url"], session_id=token["access_token"], session=session, version="62.0"
            )
        return self._sf

    def sobject(self, name: str) -> SFType:
        """`sf.<name>`, typed (simple-salesforce's attribute access can also mean its bulk handlers)."""
        return cast(SFType, getattr(self.sf, name))

    def step(self, title: str) -> None:
        self.console.rule(f"[bold cyan]{title}")

    def states(self) -> States:
        """Salesforce's accounts and contacts and LogiSense's accounts, from the emulators' admin APIs."""
        accounts = self.admin("salesforce", "GET", "records/Account")["records"]
        contacts = self.admin("salesforce", "GET", "records/Contact")["records"]
        return accounts, contacts, self.admin("logisense", "GET", "accounts")["items"]

    def logisense_settings(self) -> LogisenseSettings:
        ls = self.description["logisense"]
        return LogisenseSettings(
            base_url=ls["base_url"],
            ca_file=ls["ca_file"],
            username=ls["username"],
            password=ls["password"],
            client_id=ls["client_id"],
        )

    def lookup(self) -> References:
        """LogiSense's reference data as it is now; these reads of the demo's are kept out of the request tables."""
        before = self._logisense_requests()
        refs = load_references(self.logisense_settings())
        self._count_own_requests(before)
        return refs

    def _count_own_requests(self, before: dict[str, int]) -> None:
        """Book LogiSense's requests since `before` as the demo's own (kept out of the request tables)."""
        for key, count in self._logisense_requests().items():
            self._own_requests[key] = self._own_requests.get(key, 0) + count - before.get(key, 0)

    def compare(self, states: States, lookup: References) -> list[str]:
        """devstack.compare's differences between the states, with the demo's mappings."""
        return differences(*states, Settings(mappings=MAPPINGS, logisense=self.logisense_settings()), lookup)

    def wait_in_sync(self, what: str, done: Callable[[], bool] | None = None) -> list[str]:
        """Wait until LogiSense equals Salesforce (and `done` holds); the differences left, if any."""
        diffs: list[str] = []
        lookup = self.lookup()

        def in_sync() -> bool:
            diffs[:] = self.compare(self.states(), lookup)
            return not diffs and (done is None or done())

        with self.console.status(f"waiting for the syncer ({what}; batches every {SYNC_INTERVAL_SECONDS}s)"):
            return [] if self.wait_for(in_sync, CONVERGE_SECONDS) else diffs

    def published_events(self) -> list[ChangeEvent]:
        """Change events the listener committed since the last call (read_committed)."""
        consumer = kafka.consumer(
            KafkaSettings(bootstrap_servers=self.description["kafka"]["bootstrap_servers"]),
            f"sfls-demo-{uuid.uuid4().hex[:8]}",
        )
        consumer.subscribe(["sfls.changes"])
        events: list[ChangeEvent] = []
        quiet_until = time.monotonic() + 4
        while time.monotonic() < quiet_until:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None and message.value():
                events.append(ChangeEvent.from_bytes(message.value() or b""))
                quiet_until = time.monotonic() + 1.5
        consumer.close()
        events.sort(key=lambda e: e.commit_timestamp)
        fresh, self._seen_events = events[self._seen_events :], len(events)
        return fresh

    # -- narration ---------------------------------------------------------------------------
    def show_events(self, events: list[ChangeEvent], dropped_before: dict[str, float]) -> None:
        table = Table(title="Change events the listener published", title_justify="left")
        for column in ("entity", "change", "source", "record", "account", "changed fields"):
            table.add_column(column)
        for event in events:
            table.add_row(
                event.entity.value,
                event.change_type.value,
                event.source.value,
                event.record_id,
                event.account_id,
                ", ".join(event.changed_fields)[:60],
            )
        self.console.print(table)
        ignored = {k: v - dropped_before.get(k, 0) for k, v in self.listener_dropped().items()}
        ignored = {k: v for k, v in ignored.items() if v}
        if ignored:
            reasons = ", ".join(f"{int(v)} {k.split('reason=')[-1].rstrip('}')}" for k, v in ignored.items())
            self.console.print(f"[yellow]Changes the listener ignored:[/] {reasons}")

    def listener_dropped(self) -> dict[str, float]:
        return {k: v for k, v in metrics(self.services[0]).items() if k.startswith("sfls_listener_changes_dropped")}

    def show_side_by_side(self, names: list[str]) -> None:
        accounts, contacts, ls_accounts = self.states()
        by_name = {a["Name"]: a for a in accounts if not a.get("IsDeleted")}
        by_link = {a.get("sfdcid"): a for a in ls_accounts}
        by_identity = {a["identity"]: a for a in ls_accounts}
        table = Table(title="Salesforce | LogiSense", title_justify="left")
        for column in ("account", "type", "status", "bill group", "parent", "contacts"):
            table.add_column(column)
        for name in names:
            sf = by_name.get(name)
            if sf is None:
                continue
            ls = by_link.get(sf["Id"], {})
            parent_sf = next((a["Name"] for a in accounts if a["Id"] == sf.get("ParentId")), "")
            parent_ls = by_identity.get(ls.get("parentAccountId"), {}).get("name", "")
            sf_contacts = sorted(
                f"{c['FirstName']} {c['LastName']}"
                for c in contacts
                if c.get("AccountId") == sf["Id"] and not c.get("IsDeleted")
            )
            ls_contacts = sorted(f"{c.get('firstName')} {c.get('lastName')}" for c in ls.get("contacts", []))
            table.add_row(
                name,
                f"{sf.get('Type') or ''} | {ls.get('accountTypeName', '-')}",
                f"{sf.get('LogiSense_Status__c') or ''} | {ls.get('accountStatusTypeName', '-')}",
                f"{sf.get('LogiSense_Bill_Group__c') or ''} | {ls.get('billGroupName', '-')}",
                f"{parent_sf} | {parent_ls}",
                f"{', '.join(sf_contacts)} | {', '.join(ls_contacts) or '-'}",
            )
        self.console.print(table)

    def show_logisense_calls(self, before: dict[str, int]) -> dict[str, int]:
        now = self._logisense_writes()
        table = Table(title="What the syncer sent to LogiSense", title_justify="left")
        for column in ("resource", "operation", "status", "requests"):
            table.add_column(column)
        for key, count in sorted(now.items()):
            delta = count - before.get(key, 0)
            if delta:
                table.add_row(*key.split(" "), str(delta))
        self.console.print(table)
        return now

    def _logisense_writes(self) -> dict[str, int]:
        """What LogiSense served the services (its counters, the demo's own reference reads taken out)."""
        return {k: v - self._own_requests.get(k, 0) for k, v in self._logisense_requests().items()}

    def _logisense_requests(self) -> dict[str, int]:
        counters = self.admin("logisense", "GET", "counters")
        return {
            f"{r['resource']} {r['operation']} {r['status']}": int(r["count"])
            for r in counters["requests"]
            if r["resource"] not in ("Access/Login",)
        }

    # -- the scenario ------------------------------------------------------------------------
    def run(self) -> bool:
        started = time.monotonic()
        steps = (
            self.start_stack,
            self.test_connection,
            self.import_all,
            self.start_services_and_backfill,
            self.create_accounts,
            self.change_accounts,
            self.fail_validation,
            self.fix_and_replay,
            self.quote_to_cash,
            self.reconcile,
            self.show_request_log,
        )
        for step in steps:
            if step() is False:
                self.console.print(f"[bold red]the demo stopped at: {step.__doc__}[/]")
                return False
        return self.verdict(time.monotonic() - started)

    def start_stack(self) -> None:
        """Start the local stack."""
        self.step("1. Local stack: Kafka 4.3 (KRaft) and the Salesforce and LogiSense emulators")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.description = self.stack.up()
        self._http.verify = self.description["salesforce"]["ca_file"]
        self._http.trust_env = False
        self.write_config()
        for system, key in (("kafka", "bootstrap_servers"), ("salesforce", "instance_url"), ("logisense", "base_url")):
            self.console.print(f"  {system:<11} {self.description[system][key]}")
        source = self.state_dir / "sfls-schema"  # the org admin's step: deploy what `sfls import schema` writes
        self.sfls("import", "schema", "--out", str(source), show=False)
        self.admin("salesforce", "POST", "schema-source", {"path": str(source)})
        self.seed_existing_customers()

    def test_connection(self) -> bool:
        """sfls test-connection."""
        self.step("2. sfls test-connection")
        return self.sfls("test-connection").returncode == 0

    def import_all(self) -> bool:
        """sfls import all."""
        self.step("3. sfls import all: catalogue and reference data from LogiSense into Salesforce")
        result = self.sfls("import", "all")
        product_count = len(self.admin("salesforce", "GET", "records/Product2")["records"])
        self.console.print(f"Salesforce now holds {product_count} Product2 records (package frequencies).")
        return result.returncode == 0

    def start_services_and_backfill(self) -> bool:
        """Start the listener and the syncer, then backfill."""
        self.step(
            "4. Start the listener, the syncer and the Requests tab writer; "
            "sfls backfill (the original 'Start Data Sync')"
        )
        self.services = [
            ServiceProcess.sfls(*args, env=self.env, log=self.state_dir / f"{args[0]}.log", new_session=True)
            for args in (("listener",), ("syncer",), ("requests-tab", "run"))
        ]
        for service in self.services:
            service.wait_ready(60)
        transport = self.env["SFLS_SALESFORCE__TRANSPORT"]
        how = "the Pub/Sub API (gRPC, Avro)" if transport == "pubsub" else "CometD (the Streaming API)"
        self.console.print(f"The listener receives change events over {how}: SFLS_SALESFORCE__TRANSPORT={transport}")
        self.metrics_before = {s.name: metrics(s) for s in self.services}
        self.calls = self._logisense_writes()
        self.sfls("backfill")
        self.show_events(self.published_events(), {})
        return self.converged("backfill", ["Northwind Traders", "Contoso Ltd"])

    def create_accounts(self) -> bool:
        """Create accounts and contacts in Salesforce."""
        self.step("5. A Salesforce user creates Acme Holdings with two child accounts and their contacts")
        dropped = self.listener_dropped()
        self.create_acme()
        self.show_events(self.published_events(), dropped)
        return self.converged("new accounts", ["Acme Holdings", "Acme East", "Acme West"])

    def change_accounts(self) -> bool:
        """Change a trigger field and a non-trigger field, delete a contact."""
        self.step("6. A trigger field changes, a non-trigger field changes, a contact is deleted")
        dropped = self.listener_dropped()
        self.sobject("Account").update(self.ids["Acme East"], {"LogiSense_Status__c": "Suspended"})
        self.console.print("  Acme East: LogiSense_Status__c Active -> Suspended   (billing-relevant)")
        self.sobject("Account").update(self.ids["Acme West"], {"Description": "Prefers invoices by post"})
        self.console.print("  Acme West: Description changed                  (not billing-relevant)")
        self.sobject("Contact").delete(self.ids["contact:Bo Ek"])
        self.console.print("  Contact Bo Ek of Acme West deleted")
        self.show_events(self.published_events(), dropped)
        return self.converged("changes", ["Acme East", "Acme West"])

    def fail_validation(self) -> bool:
        """Create an account LogiSense cannot take."""
        self.step(f"7. An account LogiSense cannot take: Bill Group {MISSING_BILL_GROUP!r} does not exist there")
        self.ids["Globex"] = self.sobject("Account").create(
            {
                "Name": "Globex",
                "Type": "Customer",
                "LogiSense_Status__c": "Active",
                "LogiSense_Bill_Group__c": MISSING_BILL_GROUP,
                "LogiSense_AR_Term__c": "Net 30",
            }
        )["id"]
        self.console.print(f"  created Globex ({self.ids['Globex']}) with Bill Group {MISSING_BILL_GROUP!r}")
        self.published_events()
        if not self.wait_for(lambda: self.ids["Globex"] in self.sfls("dlq", "list", show=False).stdout, 60):
            self.console.print("[red]the dead letter did not appear[/]")
            return False
        self.sfls("dlq", "list")
        if not self.wait_for(lambda: self.globex_request().get("Status__c") == "Failed", 60):
            self.console.print("[red]the failed request did not reach the Requests tab[/]")
            return False
        self.globex_request_id = str(self.globex_request()["Id"])
        self.show_requests_tab(
            "In Salesforce: the LogiSense Requests tab and the Account, as the billing admin sees them"
        )
        return True

    def globex_request(self) -> Row:
        """Globex's account sync on the Requests tab, with its Request Error Logs (a parent-to-child subquery)."""
        soql = format_soql(
            "SELECT Id, Name, Status__c, Reason__c, (SELECT Error_Class__c, HTTP_Status__c, Message__c, "
            "Replay_Command__c FROM Request_Error_Logs__r) FROM LogiSense_Request__c "
            "WHERE Account__c = {} AND Kind__c = 'account_sync'",
            self.ids["Globex"],
        )
        rows = self.sf.query(soql)["records"]
        return cast(Row, rows[0]) if rows else {}

    def show_requests_tab(self, title: str) -> None:
        request = self.globex_request()
        errors = (request.get("Request_Error_Logs__r") or {}).get("records", [])
        account = self.sobject("Account").get(self.ids["Globex"])
        table = Table(title=title, title_justify="left")
        for column in ("record", "status", "what it says"):
            table.add_column(column)
        table.add_row(f"LogiSense Request {request['Id']}", request["Status__c"], request.get("Reason__c") or "")
        for error in errors:
            status = f" (HTTP {error['HTTP_Status__c']})" if error.get("HTTP_Status__c") else ""
            table.add_row(
                "  └ Request Error Log",
                f"{error['Error_Class__c']}{status}",
                f"{error['Message__c'] or ''}\nreplay: {error['Replay_Command__c'] or '-'}",
            )
        table.add_row(
            "Account Globex",
            str(account.get("LogiSense_Sync_Status__c")),
            f"LogiSense Account Id: {account.get('LogiSense_Account_Id__c') or '-'}"
            + (f"\n{account['LogiSense_Sync_Reason__c']}" if account.get("LogiSense_Sync_Reason__c") else ""),
        )
        self.console.print(table)

    def fix_and_replay(self) -> bool:
        """Fix the cause in LogiSense and replay the dead letter."""
        self.step("8. The billing admin adds the bill group in LogiSense; sfls dlq replay delivers Globex")
        asyncio.run(self.add_bill_group())
        self.console.print(f"  LogiSense: BillGroup {MISSING_BILL_GROUP!r} created")
        self.sfls("dlq", "replay", "--key", self.ids["Globex"])
        if not self.converged("replay", ["Globex"], done=lambda: self.in_logisense("Globex")):
            return False
        if not self.wait_for(lambda: self.globex_request().get("Status__c") == "Success", 60):
            self.console.print("[red]the Requests tab did not show the replay's Success[/]")
            return False
        self.show_requests_tab("The same LogiSense Request, now Success; its error log stays below it")
        return True

    def quote_to_cash(self) -> bool:
        """Win opportunities in Salesforce; the syncer prices them in the account's LogiSense price plan."""
        self.step(
            "9. Quote to cash: a sales rep wins two deals with Acme Holdings; the syncer prices them in LogiSense"
        )
        books = self.sf.query(format_soql("SELECT Id FROM Pricebook2 WHERE Name = {}", PRICE_BOOK))["records"]
        products = self.logisense_products(str(books[0]["Id"])) if books else []
        if len(products) < 2:
            self.console.print(f"[red]{PRICE_BOOK!r} has fewer than two active LogiSense products[/]")
            return False
        book_id, listed, discounted = str(books[0]["Id"]), products[0], products[1]
        self.published_events()  # what earlier steps left on the topic is not this step's story
        self.discounted_product = str(discounted["Product2Id"])
        self.console.print(
            f"  the opportunity setting of the listener and the syncer: SFLS_OPPORTUNITY__AUTO_PUSH="
            f"{self.env['SFLS_OPPORTUNITY__AUTO_PUSH']} (they follow Opportunity and OpportunityLineItem changes)"
        )
        first = self.win_deal(
            "Acme Holdings: network rollout",
            book_id,
            [(listed, float(listed["UnitPrice"])), (discounted, round(float(discounted["UnitPrice"]) * DISCOUNT, 2))],
        )
        if not self.wait_pushed(first):
            return False
        self.show_deal(first)
        self.sfls("opportunity", "status", first)
        before = self.account_plans()
        second = self.win_deal("Acme Holdings: expansion", book_id, [(discounted, float(discounted["UnitPrice"]))])
        if not self.wait_pushed(second):
            return False
        self.show_deal(second)
        plans, ids = self.account_plans(), {self.opportunity(o)["LogiSense_Price_Plan_Id__c"] for o in self.deals}
        entries_before = sum(len(plan["entries"]) for plan in before)
        entries_now = sum(len(plan["entries"]) for plan in plans)
        self.console.print(
            f"  both opportunities name price plan {', '.join(sorted(map(str, ids)))}; Acme Holdings has "
            f"{len(plans)} price plan(s) in LogiSense, {entries_before} -> {entries_now} entries"
        )
        return True

    def logisense_products(self, book_id: str) -> list[Row]:
        """Active entries of the book in USD whose product is a LogiSense package frequency (list price above 0),
        one per product, by product name."""
        soql = (
            "SELECT Id, UnitPrice, Product2Id, Product2.Name, Product2.ProductCode, Product2.LogiSense_Id__c "
            "FROM PricebookEntry WHERE Pricebook2Id = {} AND IsActive = true"
        )
        fields = {f["name"] for f in self.sobject("PricebookEntry").describe()["fields"]}
        if "CurrencyIsoCode" in fields:  # a multi-currency org; a single-currency org's currency is USD here
            soql += " AND CurrencyIsoCode = 'USD'"
        rows = self.sf.query_all(format_soql(soql, book_id))["records"]
        usable = [
            r
            for r in rows
            if (r.get("Product2") or {}).get("LogiSense_Id__c") and r["Product2"].get("ProductCode") and r["UnitPrice"]
        ]
        by_product = {str(r["Product2Id"]): r for r in sorted(usable, key=lambda r: str(r["Product2"]["Name"]))}
        return sorted(by_product.values(), key=lambda r: str(r["Product2"]["Name"]))

    def win_deal(self, name: str, book_id: str, lines: list[tuple[Row, float]]) -> str:
        """A sales rep builds the opportunity on the book, adds its lines, then closes it won; its Id."""
        dropped = self.listener_dropped()
        body = {
            "Name": name,
            "AccountId": self.ids["Acme Holdings"],
            "StageName": "Prospecting",
            "CloseDate": time.strftime("%Y-%m-%d"),
            "Pricebook2Id": book_id,
        }
        opportunity_id = str(self.sobject("Opportunity").create(body)["id"])
        self.deals.append(opportunity_id)
        self.console.print(f"  {name} ({opportunity_id}) on {PRICE_BOOK!r}, stage Prospecting")
        for entry, price in lines:
            line = {"OpportunityId": opportunity_id, "PricebookEntryId": entry["Id"], "Quantity": 1, "UnitPrice": price}
            self.sobject("OpportunityLineItem").create(line)
            list_price = float(entry["UnitPrice"])
            pricing = "list price" if price == list_price else f"{price / list_price:.0%} of list price"
            self.console.print(
                f"    + {entry['Product2']['Name']} ({entry['Product2']['ProductCode']}, LogiSense package "
                f"frequency {entry['Product2']['LogiSense_Id__c']}): {price:.2f} ({pricing} {list_price:.2f})"
            )
        self.sobject("Opportunity").update(opportunity_id, {"StageName": "Closed Won"})
        self.console.print(f"  {name}: stage Prospecting -> Closed Won")
        self.show_events(self.published_events(), dropped)
        return opportunity_id

    def wait_pushed(self, opportunity_id: str) -> bool:
        """Wait until the syncer pushed the opportunity (or refused it); True when it is Pushed."""
        record: Row = {}

        def settled() -> bool:
            record.update(self.opportunity(opportunity_id))
            return record.get("LogiSense_Push_Status__c") in ("Pushed", "Failed")

        with self.console.status(
            f"waiting for the syncer to push {opportunity_id} (batches every {SYNC_INTERVAL_SECONDS}s)"
        ):
            self.wait_for(settled, CONVERGE_SECONDS)
        self.calls = self.show_logisense_calls(self.calls)
        if record.get("LogiSense_Push_Status__c") != "Pushed":
            self.console.print(
                f"  [red]✗[/] {opportunity_id}: LogiSense_Push_Status__c {record.get('LogiSense_Push_Status__c')!r}"
                f" after {CONVERGE_SECONDS}s: {record.get('LogiSense_Push_Reason__c') or ''}"
            )
            return False
        return True

    def opportunity(self, opportunity_id: str) -> Row:
        soql = (
            "SELECT Id, Name, StageName, IsWon, Amount, LogiSense_Push_Status__c, LogiSense_Price_Plan_Id__c, "
            "LogiSense_Push_Reason__c FROM Opportunity WHERE Id = {}"
        )
        return cast(Row, self.sf.query(format_soql(soql, opportunity_id))["records"][0])

    def opportunity_lines(self, opportunity_id: str) -> list[Row]:
        soql = (
            "SELECT Id, Product2Id, Product2.Name, Product2.ProductCode, Product2.LogiSense_Id__c, UnitPrice, "
            "ListPrice, Account_Product_Code_Name__c FROM OpportunityLineItem WHERE OpportunityId = {}"
        )
        return sorted(self.sf.query(format_soql(soql, opportunity_id))["records"], key=lambda r: str(r["Id"]))

    def account_plans(self) -> list[Row]:
        """The LogiSense price plans of Acme Holdings (linked by sfdcid), from the emulator's admin API."""
        account = self.ids["Acme Holdings"][:15]
        plans = cast(list[Row], self.admin("logisense", "GET", "price_plans"))
        return [plan for plan in plans if str(plan.get("sfdcid") or "")[:15] == account]

    def show_deal(self, opportunity_id: str) -> None:
        """The opportunity and its lines in Salesforce next to the price plan LogiSense now holds."""
        opportunity, lines, plans = (
            self.opportunity(opportunity_id),
            self.opportunity_lines(opportunity_id),
            self.account_plans(),
        )
        plan = next((p for p in plans if str(p["identity"]) == str(opportunity["LogiSense_Price_Plan_Id__c"])), None)
        table = Table(title="Salesforce opportunity | LogiSense price plan", title_justify="left")
        for column in ("opportunity", "stage", "Amount", "LogiSense_Push_Status__c", "LogiSense_Price_Plan_Id__c"):
            table.add_column(column)
        table.add_column("| LogiSense plan (account, sfdcid)")
        plan_text = (
            f"| {plan['name']} #{plan['identity']} (account {plan['accountId']}, {plan['sfdcid']}), "
            f"{len(plan['entries'])} entries"
            if plan
            else "| -"
        )
        table.add_row(
            str(opportunity["Name"]),
            str(opportunity["StageName"]),
            f"{opportunity['Amount']:.2f}",
            str(opportunity["LogiSense_Push_Status__c"]),
            str(opportunity["LogiSense_Price_Plan_Id__c"]),
            plan_text,
        )
        self.console.print(table)
        entries = plan["entries"] if plan else []
        currencies = ", ".join(sorted({str(e["currencyCode"]) for e in entries})) or "-"
        title = f"Salesforce lines | LogiSense price plan entries (amounts in {currencies})"
        table = Table(title=title, title_justify="left")
        for column in ("product (code)", "UnitPrice", "ListPrice", "Account_Product_Code_Name__c"):
            table.add_column(column, justify="right" if "Price" in column else "left")
        for column in ("| productCode", "package service", "service", "recurring", "one-time"):
            table.add_column(column, justify="right" if column in ("recurring", "one-time") else "left")
        for line in lines:
            code = line["Account_Product_Code_Name__c"]
            sf_cells = [
                f"{line['Product2']['Name']} ({line['Product2']['ProductCode']})",
                f"{line['UnitPrice']:.2f}",
                f"{line['ListPrice']:.2f}",
                str(code or ""),
            ]
            mine = [e for e in entries if e["productCode"] == code] or [None]
            for index, entry in enumerate(mine):
                cells = sf_cells if index == 0 else ["", "", "", ""]
                if entry is None:
                    table.add_row(*cells, "| -", "", "", "", "")
                    continue
                table.add_row(
                    *cells,
                    f"| {entry['productCode']}",
                    str(entry["packageServiceId"]),
                    str(entry["serviceId"]),
                    f"{entry['recurringAmount']:.2f}",
                    f"{entry['oneTimeAmount']:.2f}",
                )
        self.console.print(table)

    def package_services(self, frequencies: set[int]) -> dict[int, int]:
        """Per LogiSense package frequency, how many services its package has (one plan entry each)."""
        before = self._logisense_requests()

        async def read() -> dict[int, int]:
            counted: dict[int, int] = {}
            async with LogisenseClient(self.logisense_settings()) as client:
                for frequency in sorted(frequencies):
                    package = (await client.get("Package/Frequency", frequency))["packageId"]
                    services = await client.search("Package/Service", [("packageId", "eq", package)])
                    counted[frequency] = len(services)
            return counted

        counted = asyncio.run(read())
        self._count_own_requests(before)
        return counted

    def quote_checks(self) -> list[tuple[bool, str]]:
        """The verdict's quote-to-cash checks: (passed, what was checked)."""
        if len(self.deals) < 2:
            return [(False, "quote to cash: the two opportunities were not created")]
        plans = self.account_plans()
        plan: Row = plans[0] if len(plans) == 1 else {"identity": None, "entries": []}
        deals = [self.opportunity(o) for o in self.deals]
        lines = {o: self.opportunity_lines(o) for o in self.deals}
        every_line = [line for of_deal in lines.values() for line in of_deal]
        services = self.package_services({int(line["Product2"]["LogiSense_Id__c"]) for line in every_line})
        expected = sum(services[int(line["Product2"]["LogiSense_Id__c"])] for line in every_line)
        codes = {e["productCode"] for e in plan["entries"]}
        named = {str(d["LogiSense_Price_Plan_Id__c"]) for d in deals}
        checks = [
            (len(plans) == 1, f"Acme Holdings has one LogiSense price plan ({len(plans)} found)"),
            (
                all(d["LogiSense_Push_Status__c"] == "Pushed" for d in deals) and named == {str(plan["identity"])},
                f"both opportunities are Pushed and name the same plan ({', '.join(sorted(named))})",
            ),
            (
                len(plan["entries"]) == expected
                and all(line["Account_Product_Code_Name__c"] in codes for line in every_line),
                f"the plan holds {len(plan['entries'])} entries, one per service of each line's package "
                f"({expected} expected), every line's product code among them",
            ),
        ]
        first, second = lines[self.deals[0]], lines[self.deals[1]]
        discounted = next((line for line in first if line["Product2Id"] == self.discounted_product), None)
        at_list = next((line for line in second if line["Product2Id"] == self.discounted_product), None)
        pairs: list[tuple[float, float]] = []
        if discounted is not None and at_list is not None:
            by_service = {
                e["packageServiceId"]: float(e["recurringAmount"])
                for e in plan["entries"]
                if e["productCode"] == discounted["Account_Product_Code_Name__c"]
            }
            pairs = [
                (by_service[e["packageServiceId"]], float(e["recurringAmount"]))
                for e in plan["entries"]
                if e["productCode"] == at_list["Account_Product_Code_Name__c"]
                and e["recurringAmount"]
                and e["packageServiceId"] in by_service
            ]
        shown = ", ".join(f"{low:.2f} < {high:.2f}" for low, high in pairs) or "no recurring entries to compare"
        checks.append(
            (
                bool(pairs) and all(low < high for low, high in pairs),
                f"the discount shows: recurring amount of the discounted line against the list-price line, "
                f"same product and service ({shown})",
            )
        )
        return checks

    def tab_checks(self) -> list[tuple[bool, str]]:
        """The verdict's checks of the billing admin's view: the Requests tab and the Account link."""
        request = self.globex_request()
        errors = (request.get("Request_Error_Logs__r") or {}).get("records", [])
        accounts = [a for a in self.final[0] if not a.get("IsDeleted")]
        identities = {str(a["identity"]): a.get("sfdcid") for a in self.final[2]}
        linked = [
            a
            for a in accounts
            if a.get("LogiSense_Sync_Status__c") == "Synced"
            and identities.get(str(a.get("LogiSense_Account_Id__c"))) == a["Id"]
        ]
        return [
            (
                request.get("Id") == getattr(self, "globex_request_id", None) and request.get("Status__c") == "Success",
                "Globex's request on the LogiSense Requests tab went from Failed to Success (the same record)",
            ),
            (len(errors) == 1, f"it keeps its one Request Error Log ({len(errors)} found)"),
            (
                len(linked) == len(accounts),
                f"every account carries its LogiSense account id and Synced ({len(linked)} of {len(accounts)})",
            ),
        ]

    def reconcile(self) -> bool:
        """Drift made by hand in LogiSense, found by sfls reconcile and repaired through the syncer."""
        self.step("10. A billing admin edits LogiSense by hand; sfls reconcile finds it, --repair fixes it")
        if self.sfls("reconcile").returncode != 0:
            self.console.print("[red]sfls reconcile found drift before any was made[/]")
            return False
        asyncio.run(self.edit_logisense_by_hand())
        self.console.print("  in LogiSense: Acme East renamed 'Acme East (by hand)'; Cy Oh's contact deleted")
        if self.sfls("reconcile", ok=(1,)).returncode != 1:
            self.console.print("[red]sfls reconcile did not report the drift[/]")
            return False
        self.sfls("reconcile", "--repair", ok=(1,))  # drift remains until the syncer caught up

        def caught_up() -> bool:
            return self.sfls("reconcile", "--format", "json", show=False, ok=(0, 1)).returncode == 0

        if not self.wait_for(caught_up, 60):
            self.console.print("[red]the syncer did not repair the drift within 60 s[/]")
            return False
        return self.sfls("reconcile").returncode == 0

    async def edit_logisense_by_hand(self) -> None:
        """What a billing admin might do in LogiSense's own UI: rename an account, delete a synced contact."""
        async with LogisenseClient(self.logisense_settings()) as client:
            by_name = {a["name"]: a for a in self.admin("logisense", "GET", "accounts")["items"]}
            await client.update("Account", int(by_name["Acme East"]["identity"]), {"name": "Acme East (by hand)"})
            contact_id = self.ids["contact:Cy Oh"]
            links = await client.search("Contact/Point", [{"name": "value", "operator": "eq", "value": contact_id}])
            for point in links:
                await client.delete("Contact", int(point["contactId"]))

    def show_request_log(self) -> None:
        """Show the request log and the metrics."""
        self.step("11. The request log (sfls requests) and the metrics that moved")
        self.sfls("requests", "--kind", "account_sync", "--limit", "10")
        self.sfls("requests", "--kind", "opportunity_push", "--limit", "5")
        self.show_metric_deltas(self.metrics_before)

    def converged(self, what: str, names: list[str], done: Callable[[], bool] | None = None) -> bool:
        diffs = self.wait_in_sync(what, done)
        self.calls = self.show_logisense_calls(self.calls)
        self.show_side_by_side(names)
        for line in diffs[:10]:
            self.console.print(f"  [red]✗[/] {line}")
        return not diffs

    def verdict(self, elapsed: float) -> bool:
        self.step("Verdict")
        self.final = self.states()
        diffs = self.compare(self.final, self.lookup())
        checks = self.quote_checks() + self.tab_checks()
        for passed, what in checks:
            self.console.print(f"  {'[green]✓[/]' if passed else '[red]✗[/]'} {what}")
        failed = [what for passed, what in checks if not passed]
        if diffs:
            for line in diffs[:20]:
                self.console.print(f"  [red]✗[/] {line}")
            self.console.print(f"[bold red]NOT IN SYNC: {len(diffs)} difference(s) after {elapsed:.0f}s[/]")
            return False
        if failed:
            self.console.print(f"[bold red]QUOTE TO CASH FAILED: {len(failed)} check(s) after {elapsed:.0f}s[/]")
            return False
        accounts = len([a for a in self.final[0] if not a.get("IsDeleted")])
        self.console.print(
            f"[bold green]ALL IN SYNC: {accounts} Salesforce accounts and their contacts match "
            f"LogiSense, no duplicates; {len(self.deals)} won opportunities priced in one LogiSense "
            f"price plan ({elapsed:.0f}s)[/]"
        )
        return True

    def write_config(self) -> None:
        mappings = MAPPINGS.model_dump(mode="json", include={"contact_points", "product_extensions"})
        (self.state_dir / "sfls.yaml").write_text(
            "# Written by the demo: the mappings of the original package's setup screens.\n"
            + yaml.safe_dump({"mappings": mappings}, sort_keys=False)
        )

    def seed_existing_customers(self) -> None:
        """Two customers that existed before sfls (no CDC events): the backfill brings them over."""
        accounts = [
            {
                "Id": "001000000000D01AAA",
                "Name": "Northwind Traders",
                "Type": "Customer",
                "LogiSense_Status__c": "Active",
                "LogiSense_Bill_Group__c": "Bill Group 1st",
                "LogiSense_AR_Term__c": "Net 30",
            },
            {
                "Id": "001000000000D02AAA",
                "Name": "Contoso Ltd",
                "Type": "Partner",
                "LogiSense_Status__c": "Active",
                "LogiSense_Bill_Group__c": "Bill Group 15th",
                "LogiSense_AR_Term__c": "Net 15",
            },
        ]
        self.admin("salesforce", "POST", "records", {"sobject": "Account", "records": accounts})
        contacts = [
            {
                "Id": "003000000000D01AAA",
                "AccountId": "001000000000D01AAA",
                "FirstName": "Nancy",
                "LastName": "Davolio",
                "Title": "Buyer",
                "Email": "nancy@northwind.example",
                "LogiSense_Contact_Type__c": "Billing",
            }
        ]
        self.admin("salesforce", "POST", "records", {"sobject": "Contact", "records": contacts})
        self.console.print("  Salesforce already holds 2 customers (Northwind Traders, Contoso Ltd) not yet synced")

    def create_acme(self) -> None:
        base = {
            "Type": "Customer",
            "LogiSense_Status__c": "Active",
            "LogiSense_Bill_Group__c": "Bill Group 1st",
            "LogiSense_AR_Term__c": "Net 30",
        }
        self.ids["Acme Holdings"] = self.sobject("Account").create({"Name": "Acme Holdings", **base})["id"]
        for child in ("Acme East", "Acme West"):
            self.ids[child] = self.sobject("Account").create(
                {"Name": child, "ParentId": self.ids["Acme Holdings"], **base}
            )["id"]
        people = [
            ("Acme East", "Ana", "Lima", "Controller"),
            ("Acme West", "Bo", "Ek", "Buyer"),
            ("Acme West", "Cy", "Oh", "AP Clerk"),
        ]
        for account, first, last, title in people:
            self.ids[f"contact:{first} {last}"] = self.sobject("Contact").create(
                {
                    "AccountId": self.ids[account],
                    "FirstName": first,
                    "LastName": last,
                    "Title": title,
                    "Email": f"{first.lower()}@acme.example",
                    "LogiSense_Contact_Type__c": "Billing",
                }
            )["id"]
        self.console.print("  Acme Holdings ← Acme East (Ana Lima), Acme West (Bo Ek, Cy Oh)")

    async def add_bill_group(self) -> None:
        from shared.logisense import LogisenseClient

        async with LogisenseClient(self.logisense_settings()) as client:
            await client.create("BillGroup", {"name": MISSING_BILL_GROUP, "billDay": 30, "usageBillDay": 30})

    def in_logisense(self, name: str) -> bool:
        return any(a.get("name") == name for a in self.admin("logisense", "GET", "accounts")["items"])

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(1)
        return False

    def show_metric_deltas(self, before: dict[str, dict[str, float]]) -> None:
        table = Table(title="Metrics that moved", title_justify="left")
        table.add_column("service")
        table.add_column("metric")
        table.add_column("change", justify="right")
        for service in self.services:
            for key, value in sorted(metrics(service).items()):
                delta = value - before[service.name].get(key, 0)
                # LogiSense requests per resource are in the tables above; the rest is the service's story.
                if delta and ("_total" in key or key.endswith("_count")) and "sfls_logisense_" not in key:
                    table.add_row(service.name, key, f"+{delta:g}")
        self.console.print(table)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.terminate(30)
        with suppress(Exception):
            self.stack.down()


def metrics(service: ServiceProcess) -> dict[str, float]:
    """The service's own sfls_ samples (creation timestamps and histogram buckets left out)."""
    return {
        key: value
        for key, value in service.samples().items()
        if key.startswith("sfls_") and not key.split("{")[0].endswith(("_created", "_bucket"))
    }


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """Ctrl-C and SIGTERM stop the demo through the finally that stops everything it started."""
    raise KeyboardInterrupt


def main() -> int:
    console = Console() if sys.stdout.isatty() else Console(width=140)
    cache_dir = default_cache_dir()
    demo = Demo(console, Path(os.environ.get("SFLS_DEMO_STATE_DIR", ".devstack/demo")), cache_dir)
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (e.g. `&` in a script)
        signal.signal(signum, _interrupt)
    try:
        ok = demo.run()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping everything the demo started[/]")
        ok = False
    finally:
        demo.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
