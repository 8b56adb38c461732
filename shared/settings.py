"""Settings: one frozen pydantic model per concern, read once at start-up.

Where values come from, highest priority first:
1. the environment (`SFLS_` prefix, `__` between levels: `SFLS_LOGISENSE__PASSWORD`), plus a few
   flat aliases the design names (`SFLS_SYNC_INTERVAL_MINUTES`);
2. the YAML file named by `SFLS_CONFIG` (mappings and tuning; never secrets);
3. the local stack's `stack.json` (written by `sfls devstack up`), only when `SFLS_STACK_FILE` names it:
   never found by looking around, so a stray file in a production working directory changes nothing;
4. the defaults below, each safe for production.
The sources and the error messages live in shared/config_sources.py.

Kafka client settings pass through: every `SFLS_KAFKA__<KEY>` that is not one of ours becomes the
librdkafka key `<key>` lower-cased with `_` turned into `.` (`SFLS_KAFKA__SASL_MECHANISM` ->
`sasl.mechanism`), so SASL_SSL, mTLS and cloud providers need no code change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from shared.config_sources import (
    ENV_PREFIX,
    SECRET_KEY_PATTERN,
    STACK_FILE_ENV,
    FlatAliasSource,
    StackFileSource,
    YamlFileSource,
    format_validation_error,
)
from shared.errors import ConfigError
from shared.settings_services import (
    ImportSettings,
    ImportTarget,
    ListenerSettings,
    OpportunitySettings,
    ReconcileSettings,
    RequestsTabSettings,
)
from shared.settings_services import Section as _Section

# Each service's own section lives in shared/settings_services.py; import them from here with the rest.
__all__ = [
    "ImportSettings",
    "ImportTarget",
    "ListenerSettings",
    "OpportunitySettings",
    "ReconcileSettings",
    "RequestsTabSettings",
]

DEFAULT_LOGISENSE_CLIENT_ID = "044b8ad6006845c29446b2f18e5b5909"
COLUMN_NAME_PATTERN = re.compile(r"^[a-z][A-Za-z0-9_]*$")


def check_column_name(value: str) -> str:
    """A LogiSense Column Name has no spaces and starts with a lowercase letter."""
    if not COLUMN_NAME_PATTERN.fullmatch(value):
        fixed = re.sub(r"\s+", "", value)
        fixed = fixed[:1].lower() + fixed[1:] if fixed else "field"
        raise ValueError(
            f"LogiSense Column Name {value!r} must have no spaces and start with a lowercase letter "
            f"(for example {fixed!r})"
        )
    return value


# A LogiSense Column Name (a custom field or contact point name), checked wherever a setting holds one.
ColumnName = Annotated[str, AfterValidator(check_column_name)]


class KafkaSettings(BaseModel):
    """Our Kafka settings plus any librdkafka key passed through (extra fields)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "sfls"
    partitions: int = Field(default=12, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    create_topics: bool = True
    check_acls: bool = True  # ask Kafka for every permission a command needs before it starts (shared/acls.py)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", value):
            raise ValueError("use letters, digits, '.', '_' or '-' only (a Kafka topic name part)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _hide_passthrough_secrets(cls, data: Any) -> Any:
        """Pass-through keys that hold secrets (sasl_password, ssl_key_password) become SecretStr: never printed."""
        if not isinstance(data, Mapping):
            return data
        return {
            key: SecretStr(str(value))
            if key not in cls.model_fields
            and SECRET_KEY_PATTERN.search(str(key))
            and value is not None
            and not isinstance(value, SecretStr)
            else value
            for key, value in data.items()
        }

    def librdkafka(self) -> dict[str, str]:
        """The librdkafka configuration: bootstrap servers plus every pass-through key."""
        config = {"bootstrap.servers": self.bootstrap_servers}
        for key, value in (self.model_extra or {}).items():
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            config[key.lower().replace("_", ".")] = str(raw)
        return config


class SalesforceFields(_Section):
    """Org-specific API names of the Account trigger fields that are custom fields."""

    status: str = "LogiSense_Status__c"
    bill_group: str = "LogiSense_Bill_Group__c"
    ar_term: str = "LogiSense_AR_Term__c"
    usage_invoice_recipient: str = "Usage_Invoice_Recipient__c"
    subscription_invoice_recipient: str = "Subscription_Invoice_Recipient__c"
    contact_type: str = "LogiSense_Contact_Type__c"  # on Contact: the LogiSense contact type name


class SalesforceSettings(_Section):
    """Connection to Salesforce (REST, and the change events over CometD or the Pub/Sub API)."""

    instance_url: str = "https://login.salesforce.com"
    api_version: str = "62.0"
    # How the listener receives change events: CometD (the Streaming API, aiosfstream-ng) or the Pub/Sub API
    # (gRPC, services/listener/pubsub/). Switching is a full resync (services/listener/app.py).
    transport: Literal["cometd", "pubsub"] = "cometd"
    pubsub_endpoint: str = "api.pubsub.salesforce.com:7443"  # host:port of the Pub/Sub API (TLS)
    org_id: str = ""  # the Pub/Sub tenant id; empty: read from the token response's identity URL
    auth: Literal["password", "refresh_token"] = "password"
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    username: str = ""
    password: SecretStr = SecretStr("")
    security_token: SecretStr = SecretStr("")
    refresh_token: SecretStr = SecretStr("")
    ca_file: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    bulk_poll_seconds: float = Field(default=2.0, gt=0)  # first wait and base interval polling a Bulk API job
    channels: tuple[str, ...] = ("/data/AccountChangeEvent", "/data/ContactChangeEvent")
    client_tag: str = "sfls"
    fields: SalesforceFields = SalesforceFields()
    admin_url: str | None = None

    @field_validator("api_version")
    @classmethod
    def _version_shape(cls, value: str) -> str:
        if not re.fullmatch(r"\d{2,3}\.0", value):
            raise ValueError("write the API version as e.g. 62.0")
        return value

    @field_validator("pubsub_endpoint")
    @classmethod
    def _endpoint_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.\-]+:\d{1,5}", value):
            raise ValueError("write the Pub/Sub endpoint as host:port, e.g. api.pubsub.salesforce.com:7443")
        return value

    @field_validator("org_id")
    @classmethod
    def _org_id_shape(cls, value: str) -> str:
        if value and not re.fullmatch(r"00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?", value):
            raise ValueError("the org id is the 15 or 18 character id starting 00D (Setup > Company Information)")
        return value

    @field_validator("instance_url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("Salesforce is only reachable over https://; give the My Domain URL")
        return value.rstrip("/")


class LogisenseSettings(_Section):
    """Connection to the LogiSense Billing REST API."""

    base_url: str = "https://localhost:8444"
    api_version: str = "v10"
    client_id: str = DEFAULT_LOGISENSE_CLIENT_ID
    client_secret: SecretStr = SecretStr("")
    username: str = ""
    password: SecretStr = SecretStr("")
    ca_file: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    token_refresh_margin_seconds: float = Field(default=120.0, ge=0)
    link_field: ColumnName = "sfdcid"
    page_size: int = Field(default=500, ge=1, le=10000)
    # Requests per second this process sends at most (every call, tokens included); 0: no limit. Size it as the
    # tenant's limit divided by the processes that share it (README "API budgets").
    rate_limit_per_second: float = Field(default=0.0, ge=0)
    # Total seconds one call may wait out 429 answers (honouring Retry-After) without spending a retry.
    throttle_wait_seconds: float = Field(default=300.0, ge=0)
    admin_url: str | None = None

    @field_validator("api_version")
    @classmethod
    def _version_shape(cls, value: str) -> str:
        if not re.fullmatch(r"v\d{1,2}", value):
            raise ValueError("write the API version as e.g. v10")
        return value

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


class RetrySettings(_Section):
    """Backoff of LogiSense calls; see shared/retry.py."""

    max_attempts: int = Field(default=8, ge=1)
    base_seconds: float = Field(default=0.5, ge=0)
    cap_seconds: float = Field(default=60.0, gt=0)


class SyncSettings(_Section):
    """How the syncer batches and delivers."""

    interval_minutes: float = Field(default=15.0, ge=0)
    max_batch_events: int = Field(default=50_000, ge=1)
    concurrency: int = Field(default=16, ge=1, le=256)
    soql_chunk_size: int = Field(default=200, ge=1, le=800)
    retry: RetrySettings = RetrySettings()
    # A batch that fails as a whole is retried after a backoff (full jitter) between these bounds.
    batch_retry_base_seconds: float = Field(default=5.0, gt=0)
    batch_retry_cap_seconds: float = Field(default=300.0, gt=0)
    on_account_delete: Literal["close", "flag", "ignore"] = "close"
    closed_status_name: str = "Closed"
    # Account custom field (Column Name) set to true on a LogiSense account whose Salesforce account
    # was deleted, when on_account_delete is "flag".
    deleted_flag_field: ColumnName = "sfdcDeleted"
    # LogiSense contact type of a Salesforce contact whose contact-type field is blank.
    default_contact_type: str = "Billing"
    # Create a contact with all its points (the link point included) in one `PATCH Account/{id}`,
    # which LogiSense applies as one transaction (inferred, not confirmed on a real tenant: hence the setting).
    # False: `POST Contact`, then one `POST Contact/Point` per point; a crash in between leaves an
    # unlinked contact that the account's next sync takes over by name and type.
    atomic_contact_create: bool = True
    # After each batch, write the Account link (shared/salesforce_view.py LINK_FIELDS: LogiSense account id,
    # sync status and reason, last successful sync) on the synced accounts: one composite update per 200.
    account_link: bool = True


class AccountExtension(_Section):
    """A Salesforce Account field synced to a LogiSense Account custom field (by Column Name)."""

    salesforce: str
    logisense: ColumnName


class ProductExtension(_Section):
    """A LogiSense Package Frequency custom field landed on a Salesforce Product2 field."""

    logisense: ColumnName
    salesforce: str


class InvoiceColumn(_Section):
    """A LogiSense invoice column shown on the Account, with an optional relabel."""

    column: str
    label: str | None = None


class MappingSettings(_Section):
    """The original package's mapping screens, as configuration."""

    account_extensions: tuple[AccountExtension, ...] = ()
    product_extensions: tuple[ProductExtension, ...] = ()
    # LogiSense contact type -> contact point name -> Salesforce Contact field.
    contact_points: dict[str, dict[ColumnName, str]] = Field(default_factory=dict)
    invoice_columns: tuple[InvoiceColumn, ...] = ()


class BudgetSettings(_Section):
    """The Salesforce org's API allocations: what sfls leaves to the org's other integrations (shared/budget.py).

    Bulk work (import, backfill, reconcile) pauses when an allocation's remaining share falls below
    `reserve_percent`; essential work (listener, syncer, quote to cash) goes on until `floor_percent`, then
    waits. Nothing is dead-lettered for budget. `poll_seconds`: how often long-running services, and any
    paused call, read `/limits`. A bulk command paused longer than `max_pause_seconds` ends with exit code 3.
    """

    reserve_percent: float = Field(default=20.0, ge=0, lt=100)
    floor_percent: float = Field(default=5.0, ge=0, lt=100)
    poll_seconds: float = Field(default=300.0, gt=0)
    max_pause_seconds: float = Field(default=3600.0, ge=0)
    # The allocations read from /limits and exported (Salesforce's names); only these are gauged and gated.
    limits: tuple[str, ...] = (
        "DailyApiRequests",
        "DailyBulkApiBatches",
        "DailyBulkV2QueryJobs",
        "DailyDeliveredPlatformEvents",
    )

    @model_validator(mode="after")
    def _floor_below_reserve(self) -> BudgetSettings:
        if self.floor_percent > self.reserve_percent:
            raise ValueError(
                f"floor_percent ({self.floor_percent:g}) must not exceed reserve_percent ({self.reserve_percent:g}): "
                "essential work stops at the floor, bulk work already at the reserve above it"
            )
        return self


class ObservabilitySettings(_Section):
    """Logging and the /metrics, /healthz, /readyz port."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    metrics_host: str = "0.0.0.0"  # noqa: S104 - in a pod the scrape comes from outside
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    liveness_seconds: float = Field(default=300.0, gt=0)


class Settings(BaseSettings):
    """Everything sfls reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
        case_sensitive=False,
    )

    config_file: str | None = Field(default=None, alias="SFLS_CONFIG")
    kafka: KafkaSettings = KafkaSettings()
    salesforce: SalesforceSettings = SalesforceSettings()
    logisense: LogisenseSettings = LogisenseSettings()
    sync: SyncSettings = SyncSettings()
    mappings: MappingSettings = MappingSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    listener: ListenerSettings = ListenerSettings()
    importer: ImportSettings = ImportSettings()
    opportunity: OpportunitySettings = OpportunitySettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    budget: BudgetSettings = BudgetSettings()
    requests_tab: RequestsTabSettings = RequestsTabSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = dict(os.environ)
        return (
            init_settings,
            FlatAliasSource(settings_cls, environ),
            env_settings,
            YamlFileSource(settings_cls, environ.get("SFLS_CONFIG")),
            StackFileSource(settings_cls, environ.get(STACK_FILE_ENV)),
        )


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once; a bad value becomes one ConfigError naming each field and its variable."""
    try:
        return Settings(**overrides)
    except SettingsError as exc:  # an environment value that should be JSON (a section, list or dict) is not
        found = re.search(r'field "(\w+)"', str(exc))
        name = ENV_PREFIX + (found.group(1).upper() if found else "")
        raise ConfigError(
            f"invalid settings:\n  {name} or one of the {name}__* environment variables holds a value that is not "
            "valid JSON; sections, lists and mappings set from the environment take JSON"
        ) from None
    except PydanticValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
