"""Every Kafka topic's name, in one place (SPEC §2). The records' contracts: shared/contract.py
for events; the other topics' records are described where they are produced."""

from __future__ import annotations

EVENTS_TOPIC = "engage.events.v1"  # ingest → scoring, key = user_id
METRICS_TOPIC = "engage.metrics.v1"  # scoring's changelog → rewards, key = entity:id:period
GRANTS_TOPIC = "engage.grants.v1"  # rewards' outbox → notify, key = subject id
NOTIFY_TOPIC = "engage.notify.v1"  # send requests → notify
KEYS_TOPIC = "engage.keys.v1"  # API key directory, every service
FULFILMENT_TOPIC = "engage.fulfilment.v1"  # crediting systems → rewards, key = grant id

# Records a consumer could not apply, with the reason in their headers (engage/dlq.py).
EVENTS_DLQ = "engage.events.dlq"  # scoring
METRICS_DLQ = "engage.metrics.dlq"  # rewards
NOTIFY_DLQ = "engage.notify.dlq"  # notify: its inputs and the sends that failed for good
FULFILMENT_DLQ = "engage.fulfilment.dlq"  # rewards: fulfilment records it cannot apply
DLQ_TOPICS = (EVENTS_DLQ, METRICS_DLQ, NOTIFY_DLQ, FULFILMENT_DLQ)
