"""create_topic returns only when the topic is usable, accepts an existing one, and names the broker on failure."""

from __future__ import annotations

import re
import uuid

import pytest
from confluent_kafka.admin import AdminClient

from featurestore.errors import TransientError
from featurestore.kafka_topics import create_topic
from featurestore.services.ports import KAFKA_BOOTSTRAP


@pytest.fixture
def kafka(services: object) -> str:
    return services.require("kafka")  # type: ignore[attr-defined,no-any-return]


def test_every_partition_has_a_leader_on_return(kafka: str) -> None:
    for _ in range(5):  # the race it guards against showed up about once per CI run
        topic = f"topics_{uuid.uuid4().hex[:10]}"
        create_topic(kafka, topic, partitions=3, exist_ok=False)
        metadata = AdminClient({"bootstrap.servers": kafka}).list_topics(topic, timeout=10).topics[topic]
        assert metadata.error is None
        assert sorted(metadata.partitions) == [0, 1, 2]
        assert all(p.leader >= 0 for p in metadata.partitions.values())


def test_an_existing_topic_is_accepted_only_when_asked(kafka: str) -> None:
    topic = f"topics_{uuid.uuid4().hex[:10]}"
    create_topic(kafka, topic, partitions=2, exist_ok=False)
    create_topic(kafka, topic, partitions=5, exist_ok=True)  # kept as it is
    assert len(AdminClient({"bootstrap.servers": kafka}).list_topics(topic, timeout=10).topics[topic].partitions) == 2
    with pytest.raises(TransientError, match=topic):
        create_topic(kafka, topic, partitions=2, exist_ok=False)


def test_an_unreachable_broker_is_named() -> None:
    closed_port = "127.0.0.1:1"
    assert closed_port != KAFKA_BOOTSTRAP
    with pytest.raises(TransientError, match=re.escape(closed_port)):
        create_topic(closed_port, "never_created", timeout_s=2)


def test_consumer_lag_counts_what_the_group_has_not_committed(kafka: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    from ingestion.status import consumer_lag

    topic = f"topics_{uuid.uuid4().hex[:10]}"
    create_topic(kafka, topic, partitions=2, exist_ok=False)
    producer = Producer({"bootstrap.servers": kafka})
    for i in range(10):
        producer.produce(topic, b"x", partition=i % 2)
    assert producer.flush(30) == 0
    group = f"lag_{uuid.uuid4().hex[:8]}"
    assert consumer_lag(kafka, topic, group) == 10  # never committed: everything is behind
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 5)], asynchronous=False)
    consumer.close()
    assert consumer_lag(kafka, topic, group) == 2
    assert consumer_lag("127.0.0.1:1", topic, group, timeout_s=1) is None
