"""The environment child processes start from: this process's as it was before any Flink job ran.

A local Flink job's Python workers run as threads of the driver (loopback mode) and change
``os.environ``: they set the variables of :data:`WORKER_VARIABLES`, and Beam's worker pool copies
the whole environment Flink hands it (``os.environ.update(params)``). After one job, a child
inheriting that environment cannot start a Flink job of its own (``PYFLINK_GATEWAY_DISABLED``),
looked for ``bin/java`` under ``JAVA_HOME=""`` (from a TaskManager), or, as a TaskManager started
by ``featurestore services``, put the driver's PYTHONPATH in front of the code shipped with a job.
So services and job children start from :data:`STARTUP_ENVIRONMENT`, taken when this module is
first imported (``featurestore`` imports it, before any job).
"""

from __future__ import annotations

import os

WORKER_VARIABLES = (
    "PYFLINK_GATEWAY_DISABLED",
    "PYTHON_LOOPBACK_SERVER_ADDRESS",
    "_PYFLINK_CONN_INFO_PATH",
    "_PYTHON_WORKER_MEMORY_LIMIT",
    "BOOT_LOG_DIR",
    "SEMI_PERSISTENT_DIRECTORY",
)

STARTUP_ENVIRONMENT = dict(os.environ)


def child_environment(**extra: str) -> dict[str, str]:
    """The environment for a child process: :data:`STARTUP_ENVIRONMENT` without the worker
    variables, plus ``extra``."""
    env = {key: value for key, value in STARTUP_ENVIRONMENT.items() if key not in WORKER_VARIABLES}
    return {**env, **extra}
