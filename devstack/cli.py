"""`sfls devstack ...`: run the local stack. Reached through the `sfls.commands` entry point of
`devstack/pyproject.toml`, so it exists only where the local stack is installed (never in the image).
"""

from __future__ import annotations

from typing import Annotated

import typer

from devstack.settings import load_devstack_settings
from devstack.stack import Stack
from services.command import EXIT_FAILURE, out, run_guarded

app = typer.Typer(
    name="devstack",
    help="Run the local stack: Kafka and the Salesforce and LogiSense emulators (development only).",
    no_args_is_help=True,
    add_completion=False,
)
kafka_app = typer.Typer(help="Run only the local Kafka broker.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")


def _stack() -> Stack:
    return Stack.from_settings(run_guarded(load_devstack_settings))


@app.command("up")
def devstack_up() -> None:
    """Start Kafka and both emulators on 127.0.0.1 and write .devstack/stack.json."""
    stack = _stack()
    description = run_guarded(stack.up)
    out.print(f"local stack up; settings written to {stack.stack_file}")
    out.print(f"  kafka       {description['kafka']['bootstrap_servers']}")
    out.print(f"  salesforce  {description['salesforce']['instance_url']}")
    out.print(f"  logisense   {description['logisense']['base_url']}")
    for name, value in stack.environment.items():
        out.print(f"point sfls at it with:  export {name}={value}", highlight=False, soft_wrap=True)


@app.command("down")
def devstack_down() -> None:
    """Stop everything `sfls devstack up` started."""
    stopped = run_guarded(_stack().down)
    out.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command("status")
def devstack_status() -> None:
    """Show what runs where; exit code 1 if anything is stopped."""
    status = run_guarded(_stack().status)
    for name, state in status.items():
        out.print(f"  {name:<11} {state}")
    if any(state == "stopped" for state in status.values()):
        raise typer.Exit(EXIT_FAILURE)


@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Fetch the Apache Kafka broker jars from Maven Central into the cache (once)."""
    from devstack.kafka import fetch_jars

    lib = run_guarded(lambda: fetch_jars(_stack().cache_dir))
    out.print(f"Kafka jars ready in {lib}")


@kafka_app.command("up")
def kafka_up(
    port: Annotated[
        int | None, typer.Option(help="Broker port on 127.0.0.1 (default: SFLS_DEVSTACK__KAFKA_PORT).")
    ] = None,
) -> None:
    """Start only the Kafka broker (KRaft, single node) and wait until it serves clients."""
    from devstack.kafka import fetch_jars

    stack = _stack()
    broker = stack.broker()
    if port is not None:
        broker.port = port

    def start() -> None:
        fetch_jars(stack.cache_dir)
        broker.start()

    run_guarded(start)
    out.print(f"Kafka ready on {broker.bootstrap_servers} (log: {broker.log_file})")


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the local Kafka broker."""
    stopped = run_guarded(_stack().broker().stop)
    out.print("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs; exit code 1 if not."""
    broker = _stack().broker()
    pid = broker.pid()
    if pid is None:
        out.print("Kafka stopped")
        raise typer.Exit(EXIT_FAILURE)
    out.print(f"Kafka running (pid {pid}) on {broker.bootstrap_servers}")
