"""`sfls kafka acls`: the Kafka ACLs each sfls command needs, from the one table in shared/acls.py."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

kafka_app = typer.Typer(help="Kafka permissions sfls needs on a cluster with an authorizer.", no_args_is_help=True)


class Format(StrEnum):
    kafka_acls = "kafka-acls"
    strimzi = "strimzi"
    json = "json"


def register(app: typer.Typer) -> None:
    """Attach `sfls kafka ...` to the `sfls` command."""
    app.add_typer(kafka_app, name="kafka")


@kafka_app.command("acls")
def acls_command(
    ctx: typer.Context,
    service: Annotated[
        str,
        typer.Option(
            "--service",
            help="listener, syncer, importer, backfill, dlq, requests, or all.",
        ),
    ],
    principal: Annotated[
        str | None, typer.Option("--principal", help="Kafka principal to grant to (default User:sfls-<service>).")
    ] = None,
    output: Annotated[Format, typer.Option("--format", help="kafka-acls.sh lines, Strimzi ACL rules or JSON.")] = (
        Format.kafka_acls
    ),
) -> None:
    """Print the least-privilege ACLs of a service for the configured topic prefix and transactional id.

    Create entries appear only while SFLS_KAFKA__CREATE_TOPICS is true (the default); with topics the
    platform creates, set it to false and they are left out.
    """
    from dataclasses import asdict

    import yaml

    from services.command import fail, out, print_json_lines, settings_of
    from shared.acls import SERVICES, acls_for, kafka_acls_lines, strimzi_rules

    settings = settings_of(ctx)
    names = list(SERVICES) if service == "all" else [service]
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise fail(f"--service {service}: unknown service; choose one of {', '.join(SERVICES)} or all")
    for name in names:
        acls = acls_for(name, settings)
        who = principal or f"User:sfls-{name}"
        if output is Format.json:
            print_json_lines({"service": name, "principal": who, **asdict(acl)} for acl in acls)
        elif output is Format.strimzi:
            out.print(f"# {name} ({SERVICES[name]})", highlight=False)
            out.print(yaml.safe_dump(strimzi_rules(acls), sort_keys=False).rstrip(), highlight=False)
        else:
            out.print(f"# {name} ({SERVICES[name]}) as {who}", highlight=False)
            for line in kafka_acls_lines(acls, who, settings.kafka.bootstrap_servers):
                out.print(line, highlight=False, soft_wrap=True)
