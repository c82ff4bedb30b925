"""The separately packaged Kafka listener (plugins/hookgate-kafka): its message-to-run mapping
always; its consumer against a real broker when one answers at $KAFKA_BOOTSTRAP."""

from __future__ import annotations

import os
import socket
import sys
import uuid

import pytest
from aiokafka.structs import ConsumerRecord
from fakes.triggers import run_events, text_of, until
from support import ROOT

from gateway.triggers.service import SERVICE

sys.path.insert(0, str(ROOT / "plugins" / "hookgate-kafka"))
import hookgate_kafka

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def record(value: bytes | None, offset: int = 41, key: bytes | None = b"order-7") -> ConsumerRecord:
    return ConsumerRecord(
        topic="orders",
        partition=2,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=[("source", b"shop")],
    )


def kafka_config(**listener) -> dict:
    return {
        "listeners": {
            "orders": {
                "kind": "kafka",
                "topics": ["orders"],
                "bootstrap_servers": [BOOTSTRAP],
                **listener,
            }
        }
    }


async def test_a_message_becomes_an_event_and_an_agent_run(make_gateway):
    client = await make_gateway(
        kafka_config(agent="echo", prompt="Ship order {order_id}"), plugins=[hookgate_kafka]
    )
    [listener] = client.app[SERVICE].sources
    event = listener.message_event(record(b'{"order_id": 7}'))
    assert event.type == "orders" and event.id == "orders-2-41"
    assert event.payload == {"order_id": 7}
    assert event.headers == {"source": "shop", "kafka-key": "order-7"}
    assert listener.message_event(record(b"not json", key=None)).payload == {"text": "not json"}
    await listener.handle(event)  # what the consumer does before committing the offset
    assert text_of(await run_events(client, "orders-orders-2-41")) == "Ship order 7"
    with pytest.raises(Exception, match="no field 'order_id'"):
        await listener.handle(listener.message_event(record(b"{}", offset=42)))


def _broker() -> bool:
    host, _, port = BOOTSTRAP.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _broker(), reason=f"no Kafka broker answers at {BOOTSTRAP}")
async def test_consumer_against_a_real_broker(make_gateway):
    from aiokafka import AIOKafkaProducer

    topic = f"hookgate-test-{uuid.uuid4().hex[:8]}"
    got: list = []
    from gateway.triggers import ListenerManager

    listeners = ListenerManager()

    @listeners.listen(
        "kafka", topics=[topic], bootstrap_servers=[BOOTSTRAP], auto_offset_reset="earliest"
    )
    def handle(payload, headers):
        got.append(payload)

    await make_gateway({}, plugins=[hookgate_kafka, listeners])
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"n": 1}')
    finally:
        await producer.stop()
    await until(lambda: got, within=60)
    assert got == [{"n": 1}]
