"""One error hierarchy for the whole product.

Every error a user can see is a :class:`FeatureStoreError`. Each subclass says whether retrying
can help (``transient``): retry loops look at that flag, never at message text. Messages say what
was wrong, where, and what to do about it.
"""

from __future__ import annotations


class FeatureStoreError(Exception):
    """Base of every error raised by the feature store."""

    transient: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class TerminalError(FeatureStoreError):
    """Retrying the same call will fail the same way; the input or setup must change."""

    transient = False


class TransientError(FeatureStoreError):
    """The call may succeed if retried later (a server restarting, a timeout)."""

    transient = True


class ConfigError(TerminalError):
    """featurestore.yaml, an environment variable or an argument is invalid."""


class NotInstalledError(TerminalError):
    """An optional dependency is missing; the message names what to install."""


class ValidationError(TerminalError):
    """User input (a definition, a request, a data frame) breaks a rule.

    ``location`` is where: ``file:line`` for a repo file, a column name for a table.
    """

    def __init__(self, message: str, *, location: str | None = None, hint: str | None = None) -> None:
        self.location = location
        super().__init__(message if location is None else f"{location}: {message}", hint=hint)


class TimeSemanticsError(ValidationError):
    """A timestamp is naive, in the wrong unit, or otherwise cannot be placed on the UTC timeline."""


class ServiceUnavailableError(TransientError):
    """A server the feature store needs (HBase, Redis, HDFS, Kafka, Flink) cannot be reached."""

    def __init__(self, service: str, address: str, reason: str, *, hint: str | None = None) -> None:
        self.service = service
        self.address = address
        super().__init__(f"{service} at {address} is unavailable: {reason}", hint=hint)


class ServiceStartError(TerminalError):
    """A local service started by `featurestore services up` did not become healthy."""

    def __init__(self, service: str, reason: str, log_tail: str = "") -> None:
        self.service = service
        self.log_tail = log_tail
        message = f"{service} did not come up: {reason}"
        if log_tail:
            message += f"\n--- last lines of the {service} log ---\n{log_tail}"
        super().__init__(message)


class StoreError(TerminalError):
    """A storage backend refused an operation for a reason retrying will not fix."""


class NotFoundError(TerminalError):
    """A named object (feature table, feature, registry version, file) does not exist."""
