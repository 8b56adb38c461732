"""`python -m devstack.logisense --port 8444 --state-dir .devstack`: the emulator as a process.

It serves HTTPS with the local CA's certificate for `localhost` (devstack/tls.py) until SIGTERM or
SIGINT; readiness is `GET /__admin/health` answering 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from devstack.logisense.app import Emulator, EmulatorConfig, EmulatorServer
from devstack.tls import ensure_ca

DEFAULTS = EmulatorConfig()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.logisense", description="LogiSense Billing emulator (HTTPS, seeded data, faults)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8444, help="HTTPS port (default: %(default)s)")
    parser.add_argument("--state-dir", type=Path, default=Path(".devstack"), help="holds the local CA (ca.pem)")
    parser.add_argument("--client-id", default=DEFAULTS.client_id, help="the OAuth client id accepted")
    parser.add_argument("--client-secret", default="", help="accept the client-secret grant with this secret")
    parser.add_argument("--username", default=DEFAULTS.username)
    parser.add_argument("--password", default=DEFAULTS.password)
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of the data set (default: %(default)s)")
    parser.add_argument("--catalogue-size", type=int, default=DEFAULTS.catalogue_size, help="catalogue items")
    parser.add_argument("--accounts", type=int, default=DEFAULTS.accounts, help="seeded accounts (with invoices)")
    parser.add_argument(
        "--token-ttl-seconds", type=float, default=DEFAULTS.token_ttl_seconds, help="access token lifetime"
    )
    parser.add_argument(
        "--account-custom-field",
        action="append",
        default=None,
        metavar="COLUMN",
        help="an Account custom field Column Name (repeatable; default: sfdcid)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    ca = ensure_ca(args.state_dir)
    fields = tuple(args.account_custom_field) if args.account_custom_field else DEFAULTS.account_custom_fields
    config = EmulatorConfig(
        client_id=args.client_id,
        client_secret=args.client_secret,
        username=args.username,
        password=args.password,
        seed=args.seed,
        catalogue_size=args.catalogue_size,
        accounts=args.accounts,
        token_ttl_seconds=args.token_ttl_seconds,
        account_custom_fields=fields,
    )
    server = EmulatorServer(Emulator(config), args.host, args.port, ca.server_context())
    await server.start()
    logging.getLogger("devstack.logisense").info("LogiSense emulator on https://localhost:%d", server.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
