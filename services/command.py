"""What every `sfls` subcommand shares: the two consoles, one clear error and its exit code, the settings.

`services/cli.py` composes the subcommands; each service's `commands.py` (and the local stack's, when it
is installed) imports these helpers from here, never from `cli.py`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import typer
from rich.console import Console

from shared.errors import BudgetExhaustedError, ConfigError, SflsError
from shared.settings import Settings

err = Console(stderr=True)
out = Console()
T = TypeVar("T")

EXIT_CONFIG = 2
EXIT_FAILURE = 1
EXIT_BUDGET = 3  # a bulk command paused for the Salesforce API budget too long (shared/budget.py)


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print one clear error line (or a few) on stderr and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def run_guarded(action: Callable[[], T], *, again: str = "run the same command again") -> T:
    """Run a command body, turning our errors into one message and a non-zero exit code.

    `again` says how to go on after the Salesforce API budget ended the command (exit 3).
    """
    try:
        return action()
    except BudgetExhaustedError as exc:
        raise fail(f"{exc}. Nothing is lost: {again} once the window frees.", EXIT_BUDGET) from None
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    except SflsError as exc:
        raise fail(str(exc)) from None


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root command read once for this invocation."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def print_json_lines(objects: Iterable[Any]) -> None:
    """`--json`: one compact JSON object per line on stdout, never wrapped or coloured (for jq, grep, log shippers)."""
    for item in objects:
        sys.stdout.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()
