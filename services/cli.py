"""The `sfls` command: one thin function per subcommand; the work lives in the services.

Settings are read once, when any subcommand starts; a bad value ends the command with exit code 2
and a message naming the variable. Imports are lazy so `sfls --help` stays fast and the services
never import the local stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from shared.errors import ConfigError, SflsError
from shared.settings import Settings, load_settings

app = typer.Typer(
    name="sfls",
    help="Keep Salesforce and LogiSense Billing in sync through Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
devstack_app = typer.Typer(
    help="Run the local stack: Kafka and the Salesforce and LogiSense emulators.", no_args_is_help=True
)
kafka_app = typer.Typer(help="Run only the local Kafka broker.", no_args_is_help=True)
devstack_app.add_typer(kafka_app, name="kafka")
app.add_typer(devstack_app, name="devstack")

err = Console(stderr=True)
out = Console()
T = TypeVar("T")

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print one clear error line (or a few) on stderr and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def run_guarded(action: Callable[[], T]) -> T:
    """Run a command body, turning our errors into one message and a non-zero exit code."""
    from devstack.kafka import DevstackError

    try:
        return action()
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    except (SflsError, DevstackError) as exc:
        raise fail(str(exc)) from None


def settings_of(ctx: typer.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


@app.callback()
def main(ctx: typer.Context) -> None:
    """Keep Salesforce and LogiSense Billing in sync through Apache Kafka.

    Settings come from SFLS_* environment variables, the YAML file named by SFLS_CONFIG, and the
    local stack's .devstack/stack.json when it exists (see the README's configuration reference).
    """
    ctx.obj = run_guarded(load_settings)


@app.command("test-connection")
def test_connection(ctx: typer.Context) -> None:
    """Check Salesforce (token + query), LogiSense (token + read) and Kafka (metadata); exit 0 only if all pass."""
    from services.connection import check_all

    results = run_guarded(lambda: check_all(settings_of(ctx)))
    for result in results:
        mark = "[green]ok[/]  " if result.ok else "[red]FAIL[/]"
        line = f"{mark} {result.system:<11} {result.target}  {result.detail}"
        if result.hint:
            line += f"  [dim]({result.hint})[/]"
        out.print(line, highlight=False, soft_wrap=True)
    if not all(result.ok for result in results):
        raise typer.Exit(EXIT_FAILURE)


# --- local stack --------------------------------------------------------------------------------


def _stack(settings: Settings) -> Any:
    from devstack.stack import Stack

    d = settings.devstack
    return Stack(
        state_dir=d.state_dir.resolve(),
        cache_dir=d.cache_dir,
        kafka_port=d.kafka_port,
        kafka_controller_port=d.kafka_controller_port,
        salesforce_port=d.salesforce_port,
        logisense_port=d.logisense_port,
        java=d.java,
    )


@devstack_app.command("up")
def devstack_up(ctx: typer.Context) -> None:
    """Start Kafka and both emulators on 127.0.0.1 and write .devstack/stack.json."""
    stack = _stack(settings_of(ctx))
    description = run_guarded(stack.up)
    out.print(f"local stack up; settings written to {stack.stack_file}")
    out.print(f"  kafka       {description['kafka']['bootstrap_servers']}")
    out.print(f"  salesforce  {description['salesforce']['instance_url']}")
    out.print(f"  logisense   {description['logisense']['base_url']}")


@devstack_app.command("down")
def devstack_down(ctx: typer.Context) -> None:
    """Stop everything `sfls devstack up` started."""
    stopped = run_guarded(_stack(settings_of(ctx)).down)
    out.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@devstack_app.command("status")
def devstack_status(ctx: typer.Context) -> None:
    """Show what runs where; exit code 1 if anything is stopped."""
    status = run_guarded(_stack(settings_of(ctx)).status)
    for name, state in status.items():
        out.print(f"  {name:<11} {state}")
    if any(state == "stopped" for state in status.values()):
        raise typer.Exit(EXIT_FAILURE)


@kafka_app.command("fetch")
def kafka_fetch(ctx: typer.Context) -> None:
    """Fetch the Apache Kafka broker jars from Maven Central into the cache (once)."""
    from devstack.kafka import fetch_jars

    lib = run_guarded(lambda: fetch_jars(settings_of(ctx).devstack.cache_dir))
    out.print(f"Kafka jars ready in {lib}")


@kafka_app.command("up")
def kafka_up(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option(help="Broker port on 127.0.0.1 (default: SFLS_DEVSTACK__KAFKA_PORT).")
    ] = None,
) -> None:
    """Start only the Kafka broker (KRaft, single node) and wait until it serves clients."""
    from devstack.kafka import fetch_jars

    stack = _stack(settings_of(ctx))
    broker = stack.broker()
    if port is not None:
        broker.port = port

    def start() -> None:
        fetch_jars(stack.cache_dir)
        broker.start()

    run_guarded(start)
    out.print(f"Kafka ready on {broker.bootstrap_servers} (log: {broker.log_file})")


@kafka_app.command("down")
def kafka_down(ctx: typer.Context) -> None:
    """Stop the local Kafka broker."""
    stopped = run_guarded(_stack(settings_of(ctx)).broker().stop)
    out.print("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("status")
def kafka_status(ctx: typer.Context) -> None:
    """Say whether the local broker runs; exit code 1 if not."""
    broker = _stack(settings_of(ctx)).broker()
    pid = broker.pid()
    if pid is None:
        out.print("Kafka stopped")
        raise typer.Exit(EXIT_FAILURE)
    out.print(f"Kafka running (pid {pid}) on {broker.bootstrap_servers}")


def _register_service_commands() -> None:
    """Each service contributes its own subcommands; this file only composes them."""
    from services.importer import commands as importer_commands
    from services.listener import commands as listener_commands
    from services.syncer import commands as syncer_commands

    for module in (listener_commands, syncer_commands, importer_commands):
        module.register(app)


_register_service_commands()
