"""Account writes of a batch: the order dependencies impose, upserts keyed by the Salesforce id, deletes.

- Order: an account waits for the accounts it references (parent, invoice recipient) that are not in
  LogiSense yet. One missing from the batch is read from Salesforce and synced too (pulled in), so a
  child never lands before its parent. Two accounts waiting for each other are a cycle no order can
  satisfy: a MappingError naming both.
- Upsert: an existing account gets only the fields that differ; a missing one is created through
  CreateOnce. An account invoiced to itself is created first and then pointed at its own id.
- Delete: `sync.on_account_delete` closes, flags or ignores the LogiSense account.
- Currency (multi-currency orgs only): a new account gets the LogiSense currency of its CurrencyIsoCode (a
  single-currency org's gets LogiSense's default). Before anything of an account is written, a CurrencyError
  fails it when its LogiSense account already has another currency (it cannot change once set) or when its
  parent or invoice recipient bills in another currency in LogiSense (they must share one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from services.syncer.context import BatchContext, DeliveryReport
from services.syncer.lookups import Writer, diff
from services.syncer.snapshot import Snapshot, id15
from shared.errors import (
    CurrencyError,
    DependencyFailedError,
    MappingError,
    PermanentError,
    RetriesExhaustedError,
)
from shared.mapping import MappedAccount, map_account
from shared.settings import Settings


def sf_id(sid: str, snapshot: Snapshot) -> str:
    """The full Salesforce id of a 15-char account id, when the batch read the account."""
    record = snapshot.accounts.get(sid)
    return str(record["Id"]) if record else sid


def dependencies(mapped: dict[str, MappedAccount]) -> list[str]:
    """Every account the mapped accounts reference as parent or invoice recipient."""
    return sorted({d for m in mapped.values() for d in m.dependencies})


def waits_for(mapped: dict[str, MappedAccount], known: dict[str, dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Per mapped account, the 15-char ids of the accounts it references that LogiSense lacks."""
    return {sid: tuple(id15(d) for d in m.dependencies if id15(d) not in known) for sid, m in mapped.items()}


def waits_on_itself(start: str, dep: str, waiting: dict[str, tuple[str, ...]]) -> bool:
    """True when `dep` (transitively) waits for `start`: a cycle no order can satisfy."""
    seen: set[str] = set()
    stack = [dep]
    while stack:
        node = stack.pop()
        if node == id15(start):
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(waiting.get(node, ()))
    return False


def _error_class(exc: PermanentError) -> str:
    """The class a dead letter of `exc` carries (the last transient error's when retries ran out)."""
    return type(exc.last).__name__ if isinstance(exc, RetriesExhaustedError) else type(exc).__name__


def _role(mapped: MappedAccount, dep: str) -> str:
    """What account `dep` is to `mapped`: parent, invoice recipient or both."""
    roles = [
        r for r, d in (("parent", mapped.parent_sfdc_id), ("invoice recipient", mapped.invoicer_sfdc_id)) if d == dep
    ]
    return " and ".join(roles)


def account_body(
    mapped: MappedAccount, sid: str, deps: Mapping[str, int], existing: Mapping[str, Any] | None, settings: Settings
) -> dict[str, Any]:
    """What the LogiSense account of `mapped` holds once synced: the syncer writes the difference, `sfls reconcile`
    reports it. `deps`: LogiSense ids of the accounts it references, by 15-character Salesforce id."""
    body = dict(mapped.body)
    body["parentAccountId"] = deps.get(id15(mapped.parent_sfdc_id)) if mapped.parent_sfdc_id else None
    invoicer = deps.get(id15(mapped.invoicer_sfdc_id)) if mapped.invoicer_sfdc_id else None
    if mapped.invoicer_sfdc_id and id15(mapped.invoicer_sfdc_id) == sid and existing is not None:
        invoicer = int(existing["identity"])
    body["invoicerAccountId"] = body["usageInvoicerAccountId"] = invoicer
    if settings.sync.on_account_delete == "flag" and existing and existing.get(settings.sync.deleted_flag_field):
        body[settings.sync.deleted_flag_field] = False
    return body


class AccountWriter(Writer):
    """Orders, upserts and deletes the LogiSense accounts of a batch; holds no per-batch state."""

    def map(self, sid: str, batch: BatchContext) -> None:
        """Map one Salesforce account of the batch; a MappingError fails that account."""
        try:
            record, multi = batch.snapshot.accounts[sid], self._refs.multi_currency
            batch.mapped[sid] = map_account(record, self._settings, self._refs, multi_currency=multi)
        except MappingError as exc:
            batch.report.failures[sid] = exc

    async def pull_in_dependencies(
        self, batch: BatchContext, read_more: Callable[[list[str]], Awaitable[Snapshot]]
    ) -> None:
        """Parents and invoice recipients missing from LogiSense are synced first, batch or not."""
        mapped, known = batch.mapped, batch.known
        tried: set[str] = set()
        while True:
            missing = [
                d
                for d in dependencies(mapped)
                if id15(d) not in mapped and id15(d) not in known and id15(d) not in tried
            ]
            if not missing:
                return
            tried.update(id15(d) for d in missing)
            extra = await read_more(missing)
            batch.snapshot.merge(extra)
            for dep in missing:
                if batch.snapshot.exists(dep):
                    self.map(id15(dep), batch)
                    batch.report.pulled_in.add(id15(dep))
            new_deps = [d for d in dependencies(mapped) if id15(d) not in known and id15(d) not in tried]
            known.update(await self._lookups.find_accounts(new_deps))

    async def dependency_ids(self, mapped: MappedAccount, batch: BatchContext) -> dict[str, int]:
        """LogiSense ids of the accounts `mapped` references, waiting for those the batch creates.

        A CurrencyError, before anything is written, when the account's currency conflicts with LogiSense.
        """
        self._check_own_currency(mapped, batch.known.get(id15(mapped.sfdc_id)))
        result: dict[str, int] = {}
        for dep in mapped.dependencies:
            key = id15(dep)
            if key in batch.known:
                result[key] = int(batch.known[key]["identity"])
            elif key in batch.ls_ids:
                if waits_on_itself(mapped.sfdc_id, key, batch.waits_for):
                    raise MappingError(
                        f"Salesforce account {mapped.sfdc_id} and {dep} reference each other as parent or "
                        "invoice recipient and neither exists in LogiSense yet; clear one of the references"
                    )
                try:
                    result[key] = await asyncio.shield(batch.ls_ids[key])
                except PermanentError as exc:
                    cause = _error_class(exc)
                    raise DependencyFailedError(
                        f"account {dep}, which Salesforce account {mapped.sfdc_id} references as parent or invoice "
                        f"recipient, could not be synced ({cause}): {exc}",
                        dependency=dep,
                        dependency_error_class=cause,
                    ) from exc
            else:
                raise MappingError(
                    f"Salesforce account {mapped.sfdc_id} references account {dep} as parent or invoice recipient, "
                    "which exists neither in Salesforce nor in LogiSense"
                )
        self._check_dependency_currencies(mapped, batch)
        return result

    def _check_own_currency(self, mapped: MappedAccount, existing: dict[str, Any] | None) -> None:
        """CurrencyError when the synced LogiSense account has another currency than Salesforce now gives."""
        held = existing.get("currencyId") if existing else None
        if existing is None or mapped.currency_id is None or held is None or int(held) == mapped.currency_id:
            return
        old = self._refs.currency_code(int(held))
        raise CurrencyError(
            f"Salesforce account {mapped.sfdc_id} is now in {mapped.currency}, but its LogiSense account "
            f"{existing['identity']} bills in {old}, and LogiSense cannot change an account's currency once set; "
            f"nothing was written: set the Salesforce account's currency back to {old}, or bill in {mapped.currency} "
            "through a new account, then replay the dead letter"
        )

    def _check_dependency_currencies(self, mapped: MappedAccount, batch: BatchContext) -> None:
        """CurrencyError when a parent or invoice recipient bills in another currency in LogiSense."""
        if mapped.currency_id is None:
            return
        for dep in mapped.dependencies:
            key = id15(dep)
            if key in batch.known:
                held = batch.known[key].get("currencyId")
            else:  # created by this batch, in its mapped currency
                held = batch.mapped[key].currency_id if key in batch.mapped else None
            if held is None or int(held) == mapped.currency_id:
                continue
            role = _role(mapped, dep)
            theirs = self._refs.currency_code(int(held))
            raise CurrencyError(
                f"Salesforce account {mapped.sfdc_id} is in {mapped.currency}, but its {role} {dep} bills in "
                f"{theirs} in LogiSense, and a LogiSense account must share its {role}'s currency; nothing was "
                f"written for {mapped.sfdc_id}: give it the currency {theirs} or a {role} in {mapped.currency}, "
                "then replay the dead letter"
            )

    async def upsert(
        self,
        sid: str,
        mapped: MappedAccount,
        deps: dict[str, int],
        existing: dict[str, Any] | None,
        report: DeliveryReport,
    ) -> int:
        """Update the differing fields of the LogiSense account, or create it; its LogiSense id."""
        body = account_body(mapped, sid, deps, existing, self._settings)
        invoicer = body["invoicerAccountId"]
        if existing is not None:
            changes = diff(existing, body)
            if changes:
                await self._client.update("Account", int(existing["identity"]), changes)
                report.count("account_updates")
            else:
                report.count("account_unchanged")
            return int(existing["identity"])
        if invoicer is None and mapped.invoicer_sfdc_id:  # invoiced to itself: set once it has an id
            body.pop("invoicerAccountId")
            body.pop("usageInvoicerAccountId")
        currency = mapped.currency_id if mapped.currency_id is not None else self._refs.default("currency")
        if currency is not None:
            body.setdefault("currencyId", currency)
        created = await self._create_once(
            "Account", lambda: self._once.create("Account", body), lambda: self._lookups.find_account(mapped.sfdc_id)
        )
        report.count("account_creates")
        identity = int(created["identity"])
        if mapped.invoicer_sfdc_id and id15(mapped.invoicer_sfdc_id) == sid:
            await self._client.update(
                "Account", identity, {"invoicerAccountId": identity, "usageInvoicerAccountId": identity}
            )
            report.count("account_updates")
        return identity

    async def delete(self, sid: str, existing: dict[str, Any] | None, batch: BatchContext) -> None:
        """A Salesforce account that is deleted: close, flag or ignore its LogiSense account."""
        mode = self._settings.sync.on_account_delete
        if existing is None or mode == "ignore":
            batch.report.count("deleted_ignored")
            return
        if mode == "close":
            closed = self._refs("account_status_type", self._settings.sync.closed_status_name)
            changes = diff(existing, {"accountStatusTypeId": closed})
        else:
            changes = diff(existing, {self._settings.sync.deleted_flag_field: True})
        if changes:
            async with batch.semaphore:
                await self._client.update("Account", int(existing["identity"]), changes)
        batch.report.count("accounts_closed" if mode == "close" else "accounts_flagged")
        batch.report.synced.add(sid)
