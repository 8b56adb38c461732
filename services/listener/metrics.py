"""The listener's Prometheus metrics (labels of low cardinality: never a record id)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CDC_MESSAGES = Counter(
    "sfls_listener_cdc_messages_total",
    "CDC messages received, by channel and CDC change type.",
    ["channel", "change_type"],
)
EVENTS_PUBLISHED = Counter(
    "sfls_listener_events_published_total",
    "Change events committed to the changes topic.",
    ["entity", "change_type", "source"],
)
CHANGES_DROPPED = Counter("sfls_listener_changes_dropped_total", "Record changes not published, by reason.", ["reason"])
RECONNECTS = Counter("sfls_listener_reconnects_total", "Streaming client rebuilds, by reason.", ["reason"])
RESYNCS = Counter(
    "sfls_listener_resyncs_total", "Resyncs started (gap, overflow, expired replay id, backfill).", ["reason"]
)
CONNECTED = Gauge("sfls_listener_connected", "1 while subscribed to every configured channel.")
CHECKPOINT_REPLAY_ID = Gauge(
    "sfls_listener_checkpoint_replay_id", "Replay id of the last committed checkpoint.", ["channel"]
)
LAST_EVENT_TIMESTAMP = Gauge(
    "sfls_listener_last_event_timestamp_seconds",
    "Commit timestamp of the last CDC message checkpointed.",
    ["channel"],
)
TRANSACTIONS = Counter(
    "sfls_listener_transactions_total", "Kafka transactions, by outcome (committed, aborted).", ["outcome"]
)
BACKFILL_RECORDS = Counter("sfls_listener_backfill_records_total", "RESYNC events published by backfills.")
PUBSUB_ERRORS = Counter(
    "sfls_listener_pubsub_errors_total",
    "Pub/Sub API calls that ended in an error, by gRPC status and Salesforce error-code trailer.",
    ["status", "error_code"],
)
PUBSUB_KEEPALIVES = Counter(
    "sfls_listener_pubsub_keepalives_total",
    "Empty Pub/Sub fetch responses (the server's keepalive), by topic.",
    ["topic"],
)
TRANSPORT = Gauge(
    "sfls_listener_transport", "1 for the transport the listener receives change events over.", ["transport"]
)
