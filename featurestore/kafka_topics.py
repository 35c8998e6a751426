"""Creating Kafka topics that are ready to use when the call returns.

A KRaft broker acknowledges ``CreateTopics`` once the controller has recorded the topic, which can be
before the broker that answers metadata requests has learnt of it: a producer or a Flink source
started right then sees "unknown topic or partition". :func:`create_topic` therefore also waits until
the metadata shows every partition with a leader.
"""

from __future__ import annotations

import time

from featurestore.errors import TransientError


def create_topic(bootstrap: str, topic: str, *, partitions: int = 1, exist_ok: bool = True,
                 timeout_s: float = 30.0) -> None:
    """Create ``topic`` with ``partitions`` partitions (replication 1) and return once it is usable.

    An existing topic is accepted when ``exist_ok`` (its partition count is not changed). Raises
    :class:`TransientError` naming the topic and broker when Kafka cannot be reached or the topic does
    not become ready within ``timeout_s``.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    expected = partitions
    try:
        future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic]
        future.result(timeout_s)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if not (exist_ok and isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise TransientError(f"could not create Kafka topic {topic!r} on {bootstrap}: {exc}") from None
        expected = 1  # it existed before: any partition count is accepted
    except TimeoutError:
        raise TransientError(f"could not create Kafka topic {topic!r}: no answer from {bootstrap} "
                             f"within {timeout_s:.0f} s") from None
    _wait_until_ready(admin, bootstrap, topic, expected, timeout_s)


def _wait_until_ready(admin: object, bootstrap: str, topic: str, partitions: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    seen = "no metadata"
    while True:
        try:
            metadata = admin.list_topics(topic, timeout=min(5.0, timeout_s)).topics.get(topic)  # type: ignore[attr-defined]
        except Exception as exc:
            seen = str(exc)
        else:
            if metadata is not None and metadata.error is None:
                leaders = [p for p in metadata.partitions.values() if p.leader >= 0 and p.error is None]
                if len(leaders) >= partitions and len(leaders) == len(metadata.partitions):
                    return
                seen = f"{len(leaders)} of {len(metadata.partitions)} partitions with a leader"
            elif metadata is not None:
                seen = str(metadata.error)
        if time.monotonic() >= deadline:
            raise TransientError(f"Kafka topic {topic!r} on {bootstrap} was not ready after {timeout_s:.0f} s ({seen})")
        time.sleep(0.1)
