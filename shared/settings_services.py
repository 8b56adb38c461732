"""Each service's own settings section (the listener's, the importer's, reconcile's, quote to cash's, the Requests
tab's), and the
base every section of shared/settings.py shares. `shared.settings` re-exports them: import them from there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """A settings section: frozen, and a key it does not know is an error (a typo never passes silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ListenerSettings(Section):
    """The CDC listener: replay start, reconnect backoff, watchdog, transactions, lookups."""

    transactional_id: str = "sfls-listener"  # stable across restarts, so a zombie listener is fenced
    initial_replay: int = Field(default=-1, ge=-2, le=-1)  # no checkpoint yet: -1 new events, -2 all retained
    resync_on_expired_replay: bool = True  # replay id no longer retained: full resync (backfill)
    reconnect_base_seconds: float = Field(default=0.5, gt=0)
    reconnect_cap_seconds: float = Field(default=60.0, gt=0)
    watchdog_seconds: float = Field(default=150.0, gt=0)  # no /meta/connect reply for this long: rebuild
    connection_timeout_seconds: float = Field(default=10.0, ge=0)
    max_batch_messages: int = Field(default=2000, ge=1, le=10_000)  # CDC messages per Kafka transaction
    max_pending_messages: int = Field(default=5000, ge=1)
    account_cache_size: int = Field(default=100_000, ge=0)
    transaction_timeout_seconds: float = Field(default=60.0, gt=0)
    backfill_batch_size: int = Field(default=1000, ge=1)  # RESYNC events per backfill transaction
    # Pub/Sub flow control: events asked for per FetchRequest (the server allows 100 outstanding per stream).
    pubsub_batch_size: int = Field(default=100, ge=1, le=100)
    # Pub/Sub: no event and no keepalive for this long (the server sends one within 270 s): resubscribe.
    pubsub_watchdog_seconds: float = Field(default=300.0, gt=0)


class ImportTarget(Section):
    """Where one imported entity lands in Salesforce; every key overrides the importer's default."""

    sobject: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)  # Salesforce field -> LogiSense field; "" drops it


class ImportSettings(Section):
    """The importer: target objects and fields, batching (composite or Bulk API 2.0), dry-run default."""

    external_id_field: str = "LogiSense_Id__c"  # holds the LogiSense id on every target object
    hash_field: str = "LogiSense_Hash__c"  # holds the content hash; equal hash = no write
    targets: dict[str, ImportTarget] = Field(default_factory=dict)  # entity -> overrides
    batch_size: int = Field(default=200, ge=1, le=200)  # records per composite collections call
    in_flight_batches: int = Field(default=4, ge=1, le=64)  # fetched batches waiting to land (bounds memory)
    bulk_threshold: int = Field(default=10_000, ge=0)  # changed records per Bulk API 2.0 job; 0 = composite only
    dry_run: bool = False
    pushgateway_url: str | None = None  # a Prometheus Pushgateway for the Job's metrics
    price_book_name: str = Field(default="LogiSense Price Book", min_length=1)  # the custom Pricebook2 landed
    org_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")  # a single-currency org's currency (ISO code)


class ReconcileSettings(Section):
    """`sfls reconcile`: where its run's metrics go (its CronJob pushes them like the importer's)."""

    pushgateway_url: str | None = None  # a Prometheus Pushgateway for the run's metrics
    # Salesforce records of one query at or above which they are read through a Bulk API 2.0 query job
    # (REST query pages below it); 0: always REST.
    bulk_threshold: int = Field(default=50_000, ge=0)
    # Records sorted in memory at a time; more go to sorted temporary files in work_dir (services/reconcile/merge.py).
    sort_chunk_records: int = Field(default=10_000, ge=1)
    work_dir: str | None = None  # where those files go; default the system's temporary directory


class OpportunitySettings(Section):
    """Quote to cash: the account price plan a won opportunity's lines are priced in, and the automatic path.

    `watch`: the listener also follows Opportunity changes (and OpportunityLineItem changes from API 60.0)
    and the syncer marks qualifying opportunities `Ready` (`Stale` once pushed and changed). `auto_push`: the
    syncer pushes them instead (it implies `watch`). Both off by default: the original pushed on a button only.
    """

    price_plan_name: str = Field(default="Salesforce", min_length=1)  # name of the plan created for an account
    watch: bool = False
    auto_push: bool = False
    # A won opportunity on another price book: skipped (the org sells other things too), or, when every won
    # opportunity should be LogiSense's, refused (Failed, and dead-lettered by auto_push).
    other_price_books: Literal["skip", "refuse"] = "skip"

    @property
    def watched(self) -> bool:
        """True when the listener follows opportunities and the syncer handles their events."""
        return self.watch or self.auto_push


class RequestsTabSettings(Section):
    """The Requests tab writer (services/requests_tab/): which request records it lands in Salesforce, how it
    batches them, and how long Salesforce keeps them.

    `mode`: `failures` lands every Failed request with its error logs, and the outcome of each replayed dead
    letter (the admin sees Failed turn into Success); `all` lands every request (see the README for its cost);
    `off` writes nothing (the writer still reads and commits, so its lag stays flat).
    """

    mode: Literal["off", "failures", "all"] = "failures"
    batch_records: int = Field(default=10_000, ge=1)  # request records and dead letters per landing at most
    flush_seconds: float = Field(default=5.0, ge=0)  # a landing waits at most this long for more records
    retention_days: float = Field(default=30.0, ge=0)  # older requests are deleted (with their logs); 0: kept
    purge_interval_seconds: float = Field(default=3600.0, gt=0)  # how often the writer deletes expired records
