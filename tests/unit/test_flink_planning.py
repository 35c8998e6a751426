"""A statement planned on a JVM thread other than the one that created its TableEnvironment.

py4j serves each call on the JVM thread of the pooled connection it takes; while another Python
thread holds a connection, the next call opens a new one, served by a fresh JVM thread without
Calcite's thread-local metadata provider (FLINK-23020). ``plan_and_submit`` sets the provider on
the thread it plans on; a plain ``execute_sql`` there fails with ``metadataHandlerProvider``.
"""

from __future__ import annotations

import threading
import time

from ingestion.runner import plan_and_submit, table_environment


def test_a_statement_plans_on_a_jvm_thread_that_did_not_create_its_environment() -> None:
    env = table_environment([], 1, {"execution.runtime-mode": "batch"})
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    busy = threading.Thread(target=lambda: gateway.jvm.java.lang.Thread.sleep(3000))  # holds a connection
    busy.start()
    time.sleep(0.5)
    env.execute_sql("CREATE TEMPORARY TABLE s (a INT, b INT) WITH ('connector' = 'datagen', 'number-of-rows' = '10')")
    env.execute_sql("CREATE TEMPORARY TABLE k (a INT) WITH ('connector' = 'blackhole')")
    # A filter Calcite reduces: the rule asks the metadata query for pulled-up predicates.
    plan_and_submit(env, "INSERT INTO k SELECT a FROM s WHERE a > 1 AND b < 5 AND a = b + 1").wait()
    busy.join()
