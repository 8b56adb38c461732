"""`python -m devstack.salesforce`: serve the emulator over HTTPS, and the Pub/Sub API over gRPC, until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from devstack.salesforce.admin import PUBSUB
from devstack.salesforce.app import serve
from devstack.salesforce.config import Config, Tunables
from devstack.salesforce.source import load_source
from devstack.tls import ensure_ca


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.salesforce",
        description=(
            "Salesforce emulator: OAuth, REST (SOQL, sObjects, composite), CDC over CometD and over the Pub/Sub API "
            "(gRPC with TLS on --pubsub-port, eventbus.v1.PubSub), /__admin/ API."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="HTTPS port (default 8443)")
    parser.add_argument("--pubsub-port", type=int, default=7443, help="Pub/Sub API (gRPC, TLS) port (default 7443)")
    parser.add_argument("--state-dir", type=Path, default=Path(".devstack"), help="holds the local CA (ca.pem)")
    parser.add_argument("--client-id", required=True, help="connected app consumer key")
    parser.add_argument("--client-secret", required=True, help="connected app consumer secret")
    parser.add_argument("--username", required=True, help="integration user name")
    parser.add_argument("--password", required=True, help="integration user password")
    parser.add_argument("--security-token", default="", help="appended to the password by clients")
    parser.add_argument("--schema", type=Path, help="JSON file adding custom objects and fields")
    parser.add_argument(
        "--schema-source",
        type=Path,
        metavar="DIR",
        help="Salesforce DX source adding custom objects and fields (the folder `sfls import schema --out` writes)",
    )
    parser.add_argument("--token-ttl-seconds", type=float, default=7200.0, help="access token lifetime")
    parser.add_argument("--cometd-timeout-ms", type=int, default=110_000, help="long-poll hold (advice.timeout)")
    parser.add_argument("--session-idle-seconds", type=float, default=40.0, help="CometD session reconnect timeout")
    parser.add_argument("--retention-hours", type=float, default=72.0, help="CDC event retention window")
    parser.add_argument(
        "--pubsub-keepalive-seconds", type=float, default=270.0, help="Pub/Sub keepalive interval while pending"
    )
    parser.add_argument(
        "--pubsub-idle-close-seconds", type=float, default=60.0, help="Pub/Sub: end a stream idle this long"
    )
    parser.add_argument("--long-text-diff", action="store_true", help="send long text updates as {'diff': ...}")
    parser.add_argument("--multi-currency", action="store_true", help="a multi-currency org (CurrencyIsoCode fields)")
    parser.add_argument(
        "--currencies", default="USD,EUR,GBP,CAD,AUD,JPY", help="ISO codes of a multi-currency org, org currency first"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def schema_file(args: argparse.Namespace) -> Path | None:
    """The JSON schema file the emulator starts with: --schema, plus --schema-source converted (in --state-dir)."""
    given: Path | None = args.schema
    if args.schema_source is None:
        return given
    source = load_source(args.schema_source)
    spec: dict[str, Any] = json.loads(given.read_text(encoding="utf-8")) if given is not None else {}
    spec["objects"] = [*spec.get("objects", []), *source["objects"]]
    fields: dict[str, list[Any]] = spec.setdefault("fields", {})
    for name, specs in source["fields"].items():
        fields[name] = [*fields.get(name, []), *specs]
    args.state_dir.mkdir(parents=True, exist_ok=True)
    path: Path = args.state_dir / "schema-source.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


async def _main(args: argparse.Namespace) -> None:
    ca = ensure_ca(args.state_dir)
    config = Config(
        client_id=args.client_id,
        client_secret=args.client_secret,
        username=args.username,
        password=args.password,
        security_token=args.security_token,
        state_dir=args.state_dir,
        schema_file=schema_file(args),
        currencies=tuple(code.strip() for code in args.currencies.split(",") if code.strip()),
        tunables=Tunables(
            token_ttl_seconds=args.token_ttl_seconds,
            cometd_timeout_ms=args.cometd_timeout_ms,
            session_idle_seconds=args.session_idle_seconds,
            retention_seconds=args.retention_hours * 3600,
            long_text_diff=args.long_text_diff,
            multi_currency=args.multi_currency,
            pubsub_keepalive_seconds=args.pubsub_keepalive_seconds,
            pubsub_idle_close_seconds=args.pubsub_idle_close_seconds,
        ),
    )
    runner = await serve(config, args.host, args.port, ca.server_context(), tls=ca, pubsub_port=args.pubsub_port)
    # Fewer, cheaper collections keep the latency tail short: what exists at start never needs scanning.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    logging.getLogger("devstack.salesforce").info(
        "Salesforce emulator on https://localhost:%s, Pub/Sub API on localhost:%s (bound to %s); CA %s",
        args.port,
        runner.app[PUBSUB].port,
        args.host,
        ca.ca_file,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
