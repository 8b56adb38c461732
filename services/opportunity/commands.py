"""The `sfls opportunity` subcommands: thin functions that read settings and call the push.

sfls opportunity push OPPORTUNITY_ID [--dry-run] [--json]
sfls opportunity unpush OPPORTUNITY_ID [--dry-run] [--json]
sfls opportunity status OPPORTUNITY_ID [--json]
"""

from __future__ import annotations

from typing import Annotated

import typer

opportunity_app = typer.Typer(
    help="Quote to cash: push a won opportunity into its account's LogiSense price plan (the original button).",
    no_args_is_help=True,
)

OpportunityId = Annotated[str, typer.Argument(help="The Salesforce Opportunity Id (15 or 18 characters).")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")]


def register(app: typer.Typer) -> None:
    """Attach this service's subcommands to the `sfls` command."""
    app.add_typer(opportunity_app, name="opportunity")


@opportunity_app.command("push")
def push(
    ctx: typer.Context,
    opportunity_id: OpportunityId,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the planned writes; write nothing.")] = False,
    as_json: AsJson = False,
) -> None:
    """Price the won opportunity's lines as entries of its account's LogiSense price plan; write the result back."""
    from services.command import fail, out, print_json_lines, run_guarded, settings_of
    from services.opportunity.run import push_command

    settings = settings_of(ctx)
    result = run_guarded(lambda: push_command(settings, opportunity_id, dry_run=dry_run))
    if as_json:
        print_json_lines([result.as_dict()])
    elif result.outcome != "refused":
        for call in result.calls:
            out.print(call, highlight=False, soft_wrap=True)
        verb = {"pushed": "would push" if dry_run else "pushed", "unchanged": "unchanged, nothing written"}
        plan = f" (price plan {result.plan_id})" if result.plan_id is not None else ""
        writes = "" if dry_run else f", {result.logisense_writes} LogiSense write(s)"
        out.print(f"{result.opportunity_id}: {verb[result.outcome]}{plan}{writes}", highlight=False)
    if result.outcome == "refused":
        raise fail(result.message)


@opportunity_app.command("unpush")
def unpush(
    ctx: typer.Context,
    opportunity_id: OpportunityId,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the planned removals; write nothing.")] = False,
    as_json: AsJson = False,
) -> None:
    """Remove the opportunity's price plan entries and product codes from LogiSense, where no account package
    uses them (those are kept and named); the opportunity becomes Withdrawn. The price plan itself stays."""
    from services.command import out, print_json_lines, run_guarded, settings_of
    from services.opportunity.run import unpush_command

    settings = settings_of(ctx)
    result = run_guarded(lambda: unpush_command(settings, opportunity_id, dry_run=dry_run))
    if as_json:
        print_json_lines([result.as_dict()])
        return
    for call in result.calls:
        out.print(call, highlight=False, soft_wrap=True)
    removed = ", ".join(map(str, result.removed_codes)) or "none"
    kept = f"; kept (in use): {', '.join(map(str, result.kept_codes))}" if result.kept_codes else ""
    verb = "would remove" if dry_run else "removed"
    out.print(
        f"{result.opportunity_id}: {verb} product code(s) {removed}{kept}"
        + ("" if dry_run else f", {result.logisense_writes} LogiSense write(s)"),
        highlight=False,
    )


@opportunity_app.command("status")
def status(ctx: typer.Context, opportunity_id: OpportunityId, as_json: AsJson = False) -> None:
    """The push fields of the opportunity and, once pushed, its entries in the LogiSense price plan."""
    from services.command import out, print_json_lines, run_guarded, settings_of
    from services.opportunity.run import status_command

    settings = settings_of(ctx)
    state = run_guarded(lambda: status_command(settings, opportunity_id))
    if as_json:
        print_json_lines([state])
        return
    out.print(f"[bold]{state['opportunity']}[/] {state['name']} ({state['stage']})")
    for name in (
        "LogiSense_Push_Status__c",
        "LogiSense_Pushed_At__c",
        "LogiSense_Price_Plan_Id__c",
        "LogiSense_Push_Hash__c",
        "LogiSense_Push_Reason__c",
        "LogiSense_Product_Codes__c",
    ):
        out.print(f"  {name}: {state.get(name) or ''}", highlight=False, soft_wrap=True)
    for line in state["lines"]:
        out.print(
            f"  line {line['id']}: {line['Account_Product_Code_Name__c'] or '-'} "
            f"(code {line['LogiSense_Product_Code_Id__c'] or '-'})",
            highlight=False,
        )
    plan = state["price_plan"]
    if plan is None:
        out.print("  not pushed: no LogiSense price plan")
        return
    if "error" in plan:
        out.print(f"  price plan {plan['identity']}: {plan['error']}", highlight=False)
        return
    out.print(f"  LogiSense price plan {plan['identity']} {plan['name']!r}: {len(plan['entries'])} entries")
    for entry in plan["entries"]:
        recurring = sum(float(c["amount"]) for c in entry["recurringCharges"])
        one_time = sum(float(c["amount"]) for c in entry["oneTimeCharges"])
        out.print(
            f"    entry {entry['identity']}: {entry['productCode']} package service {entry['packageServiceId']} "
            f"recurring {recurring:.2f} one-time {one_time:.2f} {entry['currency'] or ''}",
            highlight=False,
        )
