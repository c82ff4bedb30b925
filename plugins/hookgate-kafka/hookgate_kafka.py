"""hookgate-kafka: the ``kafka`` listener kind, on aiokafka.

``[listeners.<name>] kind = "kafka"`` consumes ``topics`` in a consumer group (``group_id``), so
several gateways share the partitions. Offsets are committed only after a message's handlers
succeeded (auto-commit is off): a handler that fails, or a gateway that dies, leaves the offset
where it was, and the message is consumed again (at least once). A failing message is retried
with backoff and holds back the rest of its partition until it succeeds, as a Kafka consumer
that keeps order must.

A message becomes an event typed by its topic (or the payload's ``event_field``), with the
value as its payload (JSON, or ``{"text": ...}``), its headers (and ``kafka-key``) as headers,
and ``<topic>-<partition>-<offset>`` as its id, so the run it starts is named after it.
"""

from __future__ import annotations

from typing import Any

import attrs

from gateway import Count, Duration, hookimpl
from gateway.triggers import Listener, ListenerConfig, TriggerEvent


@attrs.frozen
class KafkaConfig(ListenerConfig):
    """``[listeners.<name>] kind = "kafka"``."""

    topics: tuple[str, ...] = ()
    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    group_id: str = "hookgate"
    #: Where a new group starts: "latest" or "earliest".
    auto_offset_reset: str = "latest"
    #: Messages fetched at once.
    batch: Count = Count(100)
    #: How long one fetch waits for messages.
    poll: Duration = Duration(1.0)
    #: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL takes the three options after it.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = attrs.field(default=None, repr=False)


class KafkaListener(Listener):
    config: KafkaConfig

    def __init__(self, name: str, config: KafkaConfig, gateway: Any) -> None:
        super().__init__(name, config, gateway)
        if not config.topics:
            raise ValueError("'topics' is required")
        if config.auto_offset_reset not in ("latest", "earliest"):
            raise ValueError("auto_offset_reset: expected 'latest' or 'earliest'")

    def message_event(self, message: Any) -> TriggerEvent:
        """The event for one ``aiokafka`` ``ConsumerRecord``."""
        headers = {k: v.decode(errors="replace") for k, v in message.headers or ()}
        if message.key is not None:
            headers["kafka-key"] = (
                message.key.decode(errors="replace")
                if isinstance(message.key, bytes)
                else str(message.key)
            )
        return self.event(
            message.value if message.value is not None else b"null",
            message.topic,
            headers=headers,
            id=f"{message.topic}-{message.partition}-{message.offset}",
        )

    async def consume(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        cfg = self.config
        consumer = AIOKafkaConsumer(
            *cfg.topics,
            bootstrap_servers=list(cfg.bootstrap_servers),
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset=cfg.auto_offset_reset,
            security_protocol=cfg.security_protocol,
            sasl_mechanism=cfg.sasl_mechanism or "PLAIN",
            sasl_plain_username=cfg.sasl_plain_username,
            sasl_plain_password=cfg.sasl_plain_password,
            client_id=f"hookgate-{self.name}",
        )
        try:
            await consumer.start()
            self.connected.set()
            while True:
                batches = await consumer.getmany(
                    timeout_ms=int(cfg.poll * 1000), max_records=cfg.batch
                )
                for partition, messages in batches.items():
                    for message in messages:
                        # A failure raises: the consumer restarts (with backoff) from the last
                        # committed offset, so this message comes again.
                        await self.handle(self.message_event(message))
                        await consumer.commit(
                            {
                                TopicPartition(partition.topic, partition.partition): message.offset
                                + 1
                            }
                        )
        finally:
            await consumer.stop()


@hookimpl
def gateway_register_listeners(register: Any) -> None:
    register("kafka", KafkaListener, KafkaConfig)
