"""Both emulators under a steady 1,000 requests/s: latency percentiles (goal: p99 under 50 ms).

The load is open-loop: request i is due at start + i/rate whatever happened before, and its
latency counts from when it was due, so a stall shows up in the figures instead of slowing the
load down (no coordinated omission). Each emulator runs as its own process, as in `sfls devstack up`;
the mix is what the services send: reads by id, SOQL/searches by the Salesforce id, and updates.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench.common import BenchStack, bench_stack, percentile, row

RATE = float(os.environ.get("SFLS_BENCH_RATE", "1000"))
SECONDS = float(os.environ.get("SFLS_BENCH_SECONDS", "10"))
RECORDS = 500
CONNECTIONS = 32

Request = Callable[[aiohttp.ClientSession, int], Awaitable[int]]


async def _open_loop(make_request: Request, ssl_context: ssl.SSLContext) -> tuple[list[float], int, float]:
    """Send RATE requests/s for SECONDS after a warm-up second; latencies (s) of successes, errors, rate."""
    warmup = int(RATE)
    total = warmup + int(RATE * SECONDS)
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(ssl=ssl_context, limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Open the connection pool first: TLS handshakes are part of start-up, not of steady load.
        await asyncio.gather(*(make_request(session, i) for i in range(CONNECTIONS)))

        async def one(i: int, due: float) -> None:
            nonlocal errors
            try:
                status = await make_request(session, i)
            except aiohttp.ClientError:
                status = 599
            if i < warmup:
                return
            if status >= 400:
                errors += 1
            else:
                latencies.append(time.perf_counter() - due)

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        for i in range(total):
            due = start + i / RATE
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return latencies, errors, total / elapsed


async def _salesforce(stack: BenchStack, ssl_context: ssl.SSLContext) -> tuple[list[float], int, float]:
    sf = stack.description["salesforce"]
    base = sf["instance_url"]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context)) as session:
        token_form = {
            "grant_type": "password",
            "client_id": sf["client_id"],
            "client_secret": sf["client_secret"],
            "username": sf["username"],
            "password": sf["password"],
        }
        async with session.post(f"{base}/services/oauth2/token", data=token_form) as response:
            token = (await response.json())["access_token"]
        records = [{"Id": f"001BENCH{i:07d}AAA"[:18], "Name": f"Bench {i}"} for i in range(RECORDS)]
        async with session.post(f"{sf['admin_url']}/records", json={"sobject": "Account", "records": records}) as r:
            r.raise_for_status()
    headers = {"Authorization": f"Bearer {token}"}
    ids = [r["Id"] for r in records]
    data = f"{base}/services/data/v62.0"

    async def request(session: aiohttp.ClientSession, i: int) -> int:
        record_id = ids[i % len(ids)]
        kind = i % 4
        if kind == 0:
            url, method, body = f"{data}/sobjects/Account/{record_id}", "GET", None
        elif kind == 1:
            other = ids[(i + 7) % len(ids)]
            soql = f"SELECT Id, Name, Type FROM Account WHERE Id IN ('{record_id}', '{other}')"  # noqa: S608 - our own ids
            url, method, body = f"{data}/query?q={soql}", "GET", None
        elif kind == 2:
            url, method, body = f"{data}/sobjects/Account/{record_id}", "PATCH", {"Description": f"v{i}"}
        else:
            url, method, body = f"{data}/query?q=SELECT Id FROM Contact LIMIT 5", "GET", None  # noqa: S608
        async with session.request(method, url, json=body, headers=headers) as response:
            await response.read()
            return response.status

    return await _open_loop(request, ssl_context)


async def _logisense(stack: BenchStack, ssl_context: ssl.SSLContext) -> tuple[list[float], int, float]:
    ls = stack.description["logisense"]
    base = ls["base_url"]
    api = f"{base}/ResourceServer/api/v10"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context)) as session:
        form = {
            "grant_type": "password",
            "client_id": ls["client_id"],
            "username": ls["username"],
            "password": ls["password"],
        }
        async with session.post(f"{base}/AuthorizationServer/api/v10/Access/Login", data=form) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        identities: list[int] = []
        for i in range(RECORDS // 5):
            body = {
                "name": f"Bench {i}",
                "accountTypeId": 1,
                "accountStatusTypeId": 1,
                "billGroupId": 1,
                "currencyId": 1,
                "sfdcid": f"001BENCH{i:07d}AAA"[:18],
            }
            async with session.post(f"{api}/Account", json=body, headers=headers) as response:
                response.raise_for_status()
                identities.append((await response.json())["results"]["items"][0]["identity"])

    async def request(session: aiohttp.ClientSession, i: int) -> int:
        n = i % len(identities)
        kind = i % 3
        if kind == 0:
            query = {"query": {"search": [{"name": "sfdcid", "operator": "eq", "value": f"001BENCH{n:07d}AAA"[:18]}]}}
            call: tuple[str, str, Any] = ("POST", f"{api}/Account/Search", query)
        elif kind == 1:
            call = ("GET", f"{api}/Account/{identities[n]}", None)
        else:
            call = ("PUT", f"{api}/Account/{identities[n]}", {"name": f"Bench {n} v{i}"})
        async with session.request(call[0], call[1], json=call[2], headers=headers) as response:
            await response.read()
            return response.status

    return await _open_loop(request, ssl_context)


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with bench_stack() as stack:
        context = ssl.create_default_context(cafile=stack.description["salesforce"]["ca_file"])
        for name, scenario in (("salesforce", _salesforce), ("logisense", _logisense)):
            latencies, errors, achieved = asyncio.run(scenario(stack, context))
            bench = f"{name} emulator, {RATE:,.0f} req/s open loop"
            rows += [
                row(bench, "achieved rate", achieved, "req/s", baseline="target rate", baseline_value=RATE),
                row(bench, "p50 latency", percentile(latencies, 50) * 1000, "ms"),
                row(
                    bench,
                    "p99 latency",
                    percentile(latencies, 99) * 1000,
                    "ms",
                    baseline="goal",
                    baseline_value=50.0,
                    higher_is_better=False,
                ),
                row(bench, "errors", float(errors), "requests"),
            ]
    return rows


if __name__ == "__main__":
    for item in run():
        print(item)
