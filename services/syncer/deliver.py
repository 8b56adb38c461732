"""LogiSense writes of a batch: upserts keyed by the Salesforce id, parents first, bounded concurrency.

- Upsert: every LogiSense account carries the Salesforce id in the `sfdcid` custom field, every
  contact in its `sfdcid` contact point (the link field is a setting). Before writing, one bulk
  search per chunk finds what already exists; existing records are updated with only the fields
  that differ (nothing is sent when nothing differs), missing ones are created. A create that
  fails transiently searches again before it retries, so a POST that reached LogiSense but whose
  answer was lost is never repeated: redelivery and retries never duplicate.
  (services/syncer/lookups.py: the bulk reads, `diff` and `CreateOnce`.)
- Order: an account waits for the accounts it references (parent, invoice recipient) that are
  not in LogiSense yet. Such an account outside the batch is read from Salesforce and synced
  first, so a child never lands before its parent, even across batches.
  (services/syncer/accounts.py: ordering, account upserts and deletes.)
- Contacts: a new contact is created with all its points, the link point included, in one
  `PATCH Account/{id}` (`contacts` -> `contactPoints`), which LogiSense applies as one transaction:
  a crash leaves either nothing or a linked contact. With `sync.atomic_contact_create` off it is
  `POST Contact`, then `POST Contact/Point` per point; a contact left without its link point by a
  crash in between is taken over (same name and type) by the account's next sync.
  (services/syncer/contacts.py: contacts and contact points.)
- Concurrency: at most `sync.concurrency` accounts are written at once; an account's contacts are
  written in sequence after it.
- Failures: a permanent error (validation, mapping, retries exhausted) fails its account only,
  and the accounts that wait for it (with DependencyFailedError, naming the account they waited
  for and its error class); the caller dead-letters their records.
- State: what a batch learns (its mapped accounts, what LogiSense holds, who waits for whom) lives
  in a BatchContext (services/syncer/context.py) made by each deliver() call; the Deliverer and its
  writers keep none of it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import structlog

from services.syncer.accounts import AccountWriter, dependencies, sf_id, waits_for
from services.syncer.contacts import ContactWriter
from services.syncer.context import BatchContext, DeliveryReport
from services.syncer.lookups import CreateOnce, LogisenseApi, Lookups
from services.syncer.references import References
from services.syncer.snapshot import Snapshot, id15
from shared.errors import PermanentError
from shared.mapping import MappedAccount
from shared.retry import RetryPolicy
from shared.settings import Settings

log = structlog.get_logger(__name__)

# The Salesforce account whose sync issues the current LogiSense request (for the request log).
current_account: contextvars.ContextVar[str] = contextvars.ContextVar("current_account", default="")


class Deliverer:
    """Writes one batch's Salesforce state to LogiSense; one instance per syncer process."""

    def __init__(
        self,
        client: LogisenseApi,
        once: LogisenseApi,
        settings: Settings,
        references: References,
        *,
        policy: RetryPolicy,
        on_retry: Callable[[str], None] = lambda _resource: None,
    ) -> None:
        self._client = client  # retries every call itself
        self._settings = settings
        self._refs = references
        self._link = settings.logisense.link_field
        # Process-wide, never per batch: whether LogiSense knows the `in` operator, the retry policy.
        self._lookups = Lookups(client, once, references, self._link, concurrency=settings.sync.concurrency)
        create_once = CreateOnce(policy, on_retry)
        self._accounts = AccountWriter(
            client, once, settings, references, lookups=self._lookups, create_once=create_once
        )
        self._contacts = ContactWriter(
            client, once, settings, references, lookups=self._lookups, create_once=create_once
        )

    async def deliver(
        self,
        account_ids: Sequence[str],
        snapshot: Snapshot,
        read_more: Callable[[list[str]], Awaitable[Snapshot]],
        *,
        ensure_only: Collection[str] = (),
    ) -> DeliveryReport:
        """Write the batch's accounts (and the dependencies they pull in) to LogiSense; what failed and why.

        `ensure_only`: accounts the batch needs in LogiSense (their opportunities are pushed) but has no
        change of: synced only when LogiSense does not have them yet, never deleted, like a pulled-in parent.
        """
        batch = BatchContext(
            snapshot=snapshot, report=DeliveryReport(), semaphore=asyncio.Semaphore(self._settings.sync.concurrency)
        )
        report = batch.report
        await self._refs.refresh_if_stale(self._client)
        ids = [id15(a) for a in account_ids]
        ensure = {id15(a) for a in ensure_only}
        for sid in ids:
            if snapshot.exists(sid):
                self._accounts.map(sid, batch)
        batch.known = await self._lookups.find_accounts([sf_id(s, snapshot) for s in ids] + dependencies(batch.mapped))
        for sid in ensure & set(batch.known):
            batch.mapped.pop(sid, None)
            report.present.add(sid)
        ids = [sid for sid in ids if sid not in ensure or snapshot.exists(sid)]
        await self._accounts.pull_in_dependencies(batch, read_more)
        batch.contacts = await self._lookups.prefetch_contacts(snapshot, batch.mapped, batch.known)
        batch.waits_for = waits_for(batch.mapped, batch.known)
        loop = asyncio.get_running_loop()
        batch.ls_ids = {sid: loop.create_future() for sid in batch.mapped}
        tasks = [
            asyncio.create_task(self._sync_one(sid, m, batch))
            for sid, m in batch.mapped.items()
            if sid not in report.failures
        ]
        tasks += [
            asyncio.create_task(self._delete_one(sid, batch.known.get(sid), batch))
            for sid in ids
            if not snapshot.exists(sid) and sid not in report.failures
        ]
        for sid, future in batch.ls_ids.items():
            if sid in report.failures and not future.done():
                future.set_exception(report.failures[sid])
        await asyncio.gather(*tasks)
        for future in batch.ls_ids.values():
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warnings
        return report

    async def _sync_one(self, sid: str, mapped: MappedAccount, batch: BatchContext) -> None:
        """One account: wait for its dependencies, upsert it, then its contacts."""
        token = current_account.set(mapped.sfdc_id)
        future = batch.ls_ids[sid]
        try:
            deps = await self._accounts.dependency_ids(mapped, batch)
            async with batch.semaphore:
                identity = await self._accounts.upsert(sid, mapped, deps, batch.known.get(sid), batch.report)
                batch.report.logisense_ids[sid] = identity
                future.set_result(identity)
                await self._contacts.sync(identity, batch.snapshot.contacts.get(sid, []), batch)
            batch.report.synced.add(sid)
        except PermanentError as exc:
            batch.report.failures[sid] = exc
            if not future.done():
                future.set_exception(exc)
            log.warning("account_failed", account_id=mapped.sfdc_id, error=str(exc))
        finally:
            current_account.reset(token)

    async def _delete_one(self, sid: str, existing: dict[str, Any] | None, batch: BatchContext) -> None:
        """One account deleted in Salesforce; a permanent error fails that account only."""
        token = current_account.set(str(existing.get(self._link) or sid) if existing else sid)
        try:
            await self._accounts.delete(sid, existing, batch)
        except PermanentError as exc:
            batch.report.failures[sid] = exc
        finally:
            current_account.reset(token)
