"""`sfls test-connection`: prove the credentials and addresses work, one line per system.

Like the original package's *Test Connection* button, extended to all three systems: Salesforce
(a token, a query, and what the org has left of its daily API requests), LogiSense (a token and a read)
and Kafka (cluster metadata). Each failure names its cause and the setting to look at.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from shared.errors import ConfigError, SflsError
from shared.retry import RetryPolicy
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.salesforce import SalesforceRest

ONE_TRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class CheckResult:
    system: str
    target: str
    ok: bool
    detail: str
    hint: str = ""


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _budget_line(rest: SalesforceRest) -> str:
    """What the org has left of its daily API requests, from /limits or else the last response's header."""
    from shared.budget import API_REQUESTS

    read = rest.budget.refresh()
    allocation = rest.budget.allocation(API_REQUESTS)
    if allocation is None:
        return "daily API requests: unknown"
    reserve = rest.budget.reserve(allocation)
    left = f"{allocation.remaining:,} of {allocation.max:,}"
    line = f"daily API requests: {left} left (sfls keeps {reserve:,} in reserve)"
    if allocation.remaining <= reserve:
        line += ", BELOW THE RESERVE: imports, backfills and reconcile will pause"
    if not read:
        line += "; /limits unreadable (grant the user View Setup and Configuration to see every allocation)"
    return line


def check_salesforce(settings: Settings) -> CheckResult:
    from shared.budget import Work
    from shared.salesforce import SalesforceRest

    target = settings.salesforce.instance_url
    rest = SalesforceRest.for_service(settings, "test-connection", Work.ESSENTIAL)
    started = time.perf_counter()
    try:
        rest.login()
        rest.query_all("SELECT Id FROM Account LIMIT 1")
        elapsed = (time.perf_counter() - started) * 1000
        budget = _budget_line(rest)
    except ConfigError as exc:
        return CheckResult(
            "salesforce",
            target,
            False,
            str(exc).split(";")[0],
            "check SFLS_SALESFORCE__USERNAME, SFLS_SALESFORCE__PASSWORD (+ SECURITY_TOKEN), "
            "SFLS_SALESFORCE__CLIENT_ID and SFLS_SALESFORCE__CLIENT_SECRET"
            if "refused the login" in str(exc)
            else "set SFLS_SALESFORCE__CA_FILE",
        )
    except SflsError as exc:
        return CheckResult(
            "salesforce",
            target,
            False,
            str(exc),
            "check SFLS_SALESFORCE__INSTANCE_URL (your My Domain URL) and that it is reachable",
        )
    finally:
        rest.close()
    return CheckResult("salesforce", target, True, f"token and query ok ({elapsed:.0f} ms); {budget}")


async def _logisense_probe(settings: Settings) -> None:
    from shared.logisense import LogisenseClient

    async with LogisenseClient(settings.logisense, retry=ONE_TRY) as client:
        await client.login()
        await client.search("AccountType", top=1)


def check_logisense(settings: Settings) -> CheckResult:
    target = settings.logisense.base_url
    started = time.perf_counter()
    try:
        asyncio.run(_logisense_probe(settings))
    except SflsError as exc:
        if _tls_failure(exc):
            return CheckResult(
                "logisense",
                target,
                False,
                "TLS verification failed",
                "set SFLS_LOGISENSE__CA_FILE to the CA that signed the server certificate",
            )
        if "login refused" in str(exc):
            return CheckResult(
                "logisense",
                target,
                False,
                str(exc),
                "check SFLS_LOGISENSE__USERNAME, SFLS_LOGISENSE__PASSWORD and SFLS_LOGISENSE__CLIENT_ID",
            )
        return CheckResult(
            "logisense", target, False, str(exc), "check SFLS_LOGISENSE__BASE_URL and that it is reachable"
        )
    elapsed = (time.perf_counter() - started) * 1000
    return CheckResult("logisense", target, True, f"token and read ok ({elapsed:.0f} ms)")


def check_kafka(settings: Settings) -> CheckResult:
    from confluent_kafka import KafkaException

    from shared.kafka import admin

    target = settings.kafka.bootstrap_servers
    started = time.perf_counter()
    quiet = logging.getLogger("sfls.test-connection.librdkafka")
    quiet.setLevel(logging.CRITICAL)  # the one-line verdict below says it better than librdkafka's retries
    causes: list[str] = []  # librdkafka's own reason (e.g. SASL authentication failed) beats "transport failure"
    try:
        client = admin(settings.kafka, logger=quiet, error_cb=lambda error: causes.append(error.str()))
        metadata = client.list_topics(timeout=5)
    except KafkaException as exc:
        client.poll(0.5)  # error callbacks are served by poll()
        return CheckResult(
            "kafka",
            target,
            False,
            f"no cluster metadata: {causes[-1] if causes else exc.args[0].str()}",
            "check SFLS_KAFKA__BOOTSTRAP_SERVERS and the SFLS_KAFKA__SECURITY_PROTOCOL/SASL settings",
        )
    elapsed = (time.perf_counter() - started) * 1000
    return CheckResult(
        "kafka", target, True, f"{len(metadata.brokers)} broker(s), {len(metadata.topics)} topics ({elapsed:.0f} ms)"
    )


CHECKS: tuple[Callable[[Settings], CheckResult], ...] = (check_salesforce, check_logisense, check_kafka)


def check_all(settings: Settings) -> list[CheckResult]:
    return [check(settings) for check in CHECKS]


def register(app: typer.Typer) -> None:
    """Attach `sfls test-connection` to the `sfls` command."""
    app.command("test-connection")(check_command)


def check_command(ctx: typer.Context) -> None:
    """Check Salesforce (token + query), LogiSense (token + read) and Kafka (metadata); exit 0 only if all pass."""
    from services.command import EXIT_FAILURE, out, run_guarded, settings_of

    results = run_guarded(lambda: check_all(settings_of(ctx)))
    for result in results:
        mark = "[green]ok[/]  " if result.ok else "[red]FAIL[/]"
        line = f"{mark} {result.system:<11} {result.target}  {result.detail}"
        if result.hint:
            line += f"  [dim]({result.hint})[/]"
        out.print(line, highlight=False, soft_wrap=True)
    if not all(result.ok for result in results):
        raise typer.Exit(EXIT_FAILURE)
