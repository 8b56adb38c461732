"""The `sfls` command: it only composes; each service's `commands.py` holds its subcommands.

Settings are read once, when any subcommand starts; a bad value ends the command with exit code 2
and a message naming the variable. Imports are lazy so `sfls --help` stays fast. Subcommands of
other installed distributions (the local stack's `sfls devstack`, from `devstack/pyproject.toml`)
are found through the `sfls.commands` entry points and imported only when named, so no product
command ever loads them.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from services.command import fail, run_guarded
from shared.settings import load_settings

PLUGIN_GROUP = "sfls.commands"
LOCAL_STACK = "devstack"
LOCAL_STACK_MISSING = (
    "`sfls devstack` comes with the local stack, which is not installed here: from a checkout run "
    "`make install` (or `pip install -e . -e ./devstack`); production images never carry it"
)

app = typer.Typer(
    name="sfls",
    help="Keep Salesforce and LogiSense Billing in sync through Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(ctx: typer.Context) -> None:
    """Keep Salesforce and LogiSense Billing in sync through Apache Kafka.

    Settings come from SFLS_* environment variables and the YAML file named by SFLS_CONFIG (see the
    README's configuration reference); the local stack's stack.json only when SFLS_STACK_FILE names it.
    """
    ctx.obj = run_guarded(load_settings)


def devstack(ctx: typer.Context) -> None:
    """Run the local stack: Kafka and the emulators (development only; comes with ./devstack)."""
    points = [point for point in entry_points(group=PLUGIN_GROUP) if point.name == LOCAL_STACK]
    if not points:
        raise fail(LOCAL_STACK_MISSING)
    try:
        plugin = points[0].load()
    except ImportError as exc:  # its metadata is installed but the package is gone or broken
        raise fail(f"{LOCAL_STACK_MISSING} ({exc})") from None
    command = typer.main.get_command(plugin)
    command.main(args=ctx.args, prog_name=f"{ctx.find_root().info_name} {LOCAL_STACK}")


def _register_service_commands() -> None:
    """Each service contributes its own subcommands; this file only composes them."""
    from services import connection, kafka_acls
    from services.importer import commands as importer_commands
    from services.listener import commands as listener_commands
    from services.opportunity import commands as opportunity_commands
    from services.reconcile import commands as reconcile_commands
    from services.requests_tab import commands as requests_tab_commands
    from services.syncer import commands as syncer_commands

    modules = (connection, listener_commands, syncer_commands, importer_commands, opportunity_commands)
    for module in (*modules, reconcile_commands, requests_tab_commands, kafka_acls):
        module.register(app)
    forwarded = {"allow_extra_args": True, "ignore_unknown_options": True}
    app.command(LOCAL_STACK, add_help_option=False, context_settings=forwarded)(devstack)


_register_service_commands()
