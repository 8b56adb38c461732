"""sfls's LogiSense client against the emulator: tokens, faults, retries, paging, metrics and secrets."""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import pytest
from prometheus_client import REGISTRY

from devstack.logisense.seed import CATALOGUE_ROUTES
from shared.errors import AuthExpiredError, PermanentError, RetriesExhaustedError, TransientError
from shared.logisense import RequestOutcome
from shared.logisense_wire import Condition
from shared.retry import RetryPolicy
from tests.fixtures.logisense import LogisenseEmulator

pytestmark = pytest.mark.integration


async def test_token_is_refreshed_ahead_of_expiry(logisense_emulator: LogisenseEmulator) -> None:
    """With a short token lifetime the client refreshes before expiry, so no call ever sees a 401."""
    logisense_emulator.configure(token_ttl_seconds=1.0)
    settings = logisense_emulator.settings(token_refresh_margin_seconds=0.4)
    async with logisense_emulator.client(settings) as client:
        await client.login()
        await client.list("AccountType")
        await asyncio.sleep(0.7)
        await client.list("AccountType")
    assert logisense_emulator.count(resource="Access/Login", status=200) == 2
    assert logisense_emulator.count(status=401) == 0
    assert logisense_emulator.count(resource="AccountType", status=200) == 2


async def test_a_401_refreshes_the_token_once(logisense_emulator: LogisenseEmulator) -> None:
    """Tokens revoked server-side: one 401, a fresh login (the refresh token is gone too), then success."""
    async with logisense_emulator.client() as client:
        await client.list("Currency")
        assert logisense_emulator.expire_tokens() >= 1
        assert len(await client.list("Currency")) == 4
    assert logisense_emulator.count(resource="Currency", status=401) == 1
    assert logisense_emulator.count(resource="Access/Login", status=400) == 1  # the refused refresh grant
    assert logisense_emulator.count(resource="Access/Login", status=200) == 2


async def test_emulator_clock_expires_tokens(logisense_emulator: LogisenseEmulator) -> None:
    """Moving the emulator clock past the lifetime makes the token expire; the client recovers."""
    async with logisense_emulator.client() as client:
        await client.list("Currency")
        logisense_emulator.advance_clock(3600)
        await client.list("Currency")
    assert logisense_emulator.count(resource="Currency", status=401) == 1
    assert logisense_emulator.count(resource="Currency", status=200) == 2


async def test_a_second_401_gives_up(logisense_emulator: LogisenseEmulator) -> None:
    """When LogiSense keeps answering 401 after a refresh, the call ends with the AuthExpiredError as cause."""
    logisense_emulator.faults(resource="Account", status=401)
    async with logisense_emulator.client() as client:
        with pytest.raises(RetriesExhaustedError) as caught:
            await client.list("Account")
    assert isinstance(caught.value.last, AuthExpiredError)
    assert logisense_emulator.count(resource="Account", status=401) == 2


async def test_bad_credentials_fail_permanently_without_leaking_them(logisense_emulator: LogisenseEmulator) -> None:
    """A refused login is a PermanentError naming the OAuth error, never the password."""
    outcomes: list[RequestOutcome] = []
    settings = logisense_emulator.settings(password="s3cret-wrong-password")
    async with logisense_emulator.client(settings, on_request=outcomes.append) as client:
        with pytest.raises(PermanentError) as caught:
            await client.list("Account")
    assert "invalid_grant" in str(caught.value)
    assert "s3cret-wrong-password" not in str(caught.value)
    assert [(o.resource, o.status) for o in outcomes] == [("Access/Login", 400)]
    assert all("s3cret" not in repr(o) for o in outcomes)


async def test_429_honours_retry_after(logisense_emulator: LogisenseEmulator) -> None:
    """A 429 with Retry-After is retried no sooner than the server asked."""
    logisense_emulator.faults(resource="Account", method="POST", status=429, count=1, retry_after=0.4)
    outcomes: list[RequestOutcome] = []
    policy = RetryPolicy(max_attempts=3, base_seconds=0.001, cap_seconds=5)
    async with logisense_emulator.client(retry=policy, on_request=outcomes.append) as client:
        started = time.monotonic()
        created = await client.create("Account", {"name": "Throttled"})
        elapsed = time.monotonic() - started
    assert created["name"] == "Throttled"
    assert elapsed >= 0.4
    account_outcomes = [(o.status, o.attempt) for o in outcomes if o.resource == "Account"]
    assert account_outcomes == [(429, 1), (201, 2)]


async def test_5xx_is_retried_until_success(logisense_emulator: LogisenseEmulator) -> None:
    """Two injected 503s on Account writes are retried; exactly one account is created."""
    logisense_emulator.faults(resource="Account", method="POST", status=503, count=2)
    async with logisense_emulator.client() as client:
        await client.create("Account", {"name": "Eventually"})
    assert logisense_emulator.count(resource="Account", operation="create", status=503) == 2
    assert logisense_emulator.count(resource="Account", operation="create", status=201) == 1
    assert len(logisense_emulator.accounts()) == 1


async def test_5xx_exhausts_the_retry_budget(logisense_emulator: LogisenseEmulator) -> None:
    """A resource that keeps failing ends in RetriesExhaustedError after the policy's attempts."""
    logisense_emulator.faults(resource="Package", status=500)
    async with logisense_emulator.client() as client:
        with pytest.raises(RetriesExhaustedError) as caught:
            await client.list("Package")
    assert caught.value.attempts == 4
    assert isinstance(caught.value.last, TransientError)
    assert caught.value.last.status == 500
    assert logisense_emulator.count(resource="Package", status=500) == 4


async def test_probability_faults_converge(logisense_emulator: LogisenseEmulator) -> None:
    """With 30% of requests failing, every call still succeeds within the retry budget."""
    rule = logisense_emulator.faults(probability=0.3, status=503)
    policy = RetryPolicy(max_attempts=12, base_seconds=0.001, cap_seconds=0.005)
    async with logisense_emulator.client(retry=policy) as client:
        results = [await client.get("Currency", 1) for _ in range(30)]
    assert all(r["code"] == "USD" for r in results)
    [listed] = logisense_emulator.admin("GET", "faults")["faults"]
    assert listed["id"] == rule["id"]
    assert listed["fired"] == logisense_emulator.count(status=503) > 0


async def test_latency_is_added(logisense_emulator: LogisenseEmulator) -> None:
    """A latency fault delays the answer without failing it."""
    logisense_emulator.faults(resource="Currency", latency_ms=250)
    outcomes: list[RequestOutcome] = []
    async with logisense_emulator.client(on_request=outcomes.append) as client:
        await client.get("Currency", 2)
    [currency] = [o for o in outcomes if o.resource == "Currency"]
    assert currency.status == 200
    assert currency.duration_seconds >= 0.25


async def test_hang_times_out_and_is_retried(logisense_emulator: LogisenseEmulator) -> None:
    """A hanging request hits the client timeout, counts as a transient timeout, and the retry succeeds."""
    logisense_emulator.faults(resource="Account", method="GET", hang=True, count=1)
    outcomes: list[RequestOutcome] = []
    settings = logisense_emulator.settings(timeout_seconds=0.3)
    async with logisense_emulator.client(settings, on_request=outcomes.append) as client:
        assert await client.list("Account") == []
    account = [(o.status, o.error) for o in outcomes if o.resource == "Account"]
    assert account == [(None, "timeout"), (200, None)]


async def test_hang_exhausts_into_a_timeout_error(logisense_emulator: LogisenseEmulator) -> None:
    """When every attempt hangs, the last cause is a TransientError about the timeout."""
    logisense_emulator.faults(resource="Account", hang=True)
    settings = logisense_emulator.settings(timeout_seconds=0.2)
    async with logisense_emulator.client(settings, retry=RetryPolicy(2, 0.001, 0.01)) as client:
        with pytest.raises(RetriesExhaustedError) as caught:
            await client.search("Account", [Condition("sfdcid", "eq", "001")])
    assert "timed out" in str(caught.value.last)
    logisense_emulator.clear_faults()  # releases the hanging handlers


async def test_metrics_use_route_templates(logisense_emulator: LogisenseEmulator) -> None:
    """Requests are counted per route template and status class, never per id."""

    def value(resource: str, method: str, status_class: str) -> float:
        labels = {"resource": resource, "method": method, "status_class": status_class}
        return REGISTRY.get_sample_value("sfls_logisense_requests_total", labels) or 0.0

    before_ok, before_missing = value("Currency", "GET", "2xx"), value("Currency", "GET", "4xx")
    before_search = value("Currency/Search", "POST", "2xx")
    async with logisense_emulator.client() as client:
        await client.get("Currency", 1)
        await client.search("Currency", [("code", "eq", "EUR")])
        with pytest.raises(PermanentError):
            await client.get("Currency", 99)
    assert value("Currency", "GET", "2xx") == before_ok + 1
    assert value("Currency", "GET", "4xx") == before_missing + 1
    assert value("Currency/Search", "POST", "2xx") == before_search + 1
    count = REGISTRY.get_sample_value(
        "sfls_logisense_request_duration_seconds_count",
        {"resource": "Currency", "method": "GET", "status_class": "2xx"},
    )
    assert count is not None
    assert count >= 1


async def test_errors_never_carry_tokens(logisense_emulator: LogisenseEmulator) -> None:
    """A validation error shows LogiSense's messages but no bearer token or password."""
    async with logisense_emulator.client() as client:
        await client.login()
        token = client._token
        with pytest.raises(PermanentError) as caught:
            await client.create("Contact", {"firstName": "No Account"})
    assert token
    text = f"{caught.value} {caught.value.response_excerpt}"
    assert "'AccountId' is required for 'Contact'" in text
    assert token not in text
    assert logisense_emulator.password not in text


async def test_same_seed_same_catalogue(logisense_emulator: LogisenseEmulator) -> None:
    """Resetting with the same seed reproduces the catalogue; another seed changes it."""

    async def catalogue() -> list[dict[str, object]]:
        async with logisense_emulator.client() as client:
            return [p async for p in client.paged("Package/Frequency", page_size=50)]

    logisense_emulator.reset(seed=11, catalogue_size=300)
    first = await catalogue()
    logisense_emulator.reset(seed=11, catalogue_size=300)
    again = await catalogue()
    logisense_emulator.reset(seed=12, catalogue_size=300)
    other = await catalogue()
    assert first == again
    assert first != other


async def test_paging_a_10000_item_catalogue_in_bounded_memory(logisense_emulator: LogisenseEmulator) -> None:
    """Every catalogue item of a 10,000-item catalogue streams through GET R/Paged with about one page in memory."""
    logisense_emulator.reset(catalogue_size=10_000)
    seen = 0
    identities: set[tuple[str, int]] = set()
    async with logisense_emulator.client() as client:
        tracemalloc.start()
        try:
            for route in CATALOGUE_ROUTES:
                async for item in client.paged(route, page_size=250):
                    seen += 1
                    identities.add((route, int(item["identity"])))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert seen == len(identities) == 10_000
    assert peak < 8 * 2**20  # the emulator renders one page, the client holds one page


async def test_search_paged_streams_every_match(logisense_emulator: LogisenseEmulator) -> None:
    """search_paged walks all pages of a filtered search in identity order."""
    logisense_emulator.reset(catalogue_size=2_000)
    async with logisense_emulator.client() as client:
        everything = await client.search("PricingRule", [("currencyId", "eq", 1)], top=10_000)
        streamed = [r async for r in client.search_paged("PricingRule", [("currencyId", "eq", 1)], page_size=37)]
    assert [r["identity"] for r in streamed] == sorted(r["identity"] for r in everything)
    assert len(streamed) > 37 * 3
