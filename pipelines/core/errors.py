"""Named errors raised where data or arguments enter the system.

Every job catches :class:`FraudScoringError`, prints its message and exits non-zero; anything
else is a bug and keeps its stack trace.
"""

from __future__ import annotations


class FraudScoringError(Exception):
    """Base class: an expected failure whose message tells the user what to fix."""

    exit_code = 2


class ConfigError(FraudScoringError):
    """A configuration file or value is missing or malformed."""


class InvalidArgumentError(FraudScoringError):
    """A command-line argument is malformed (for example a date that does not exist)."""


class SchemaError(FraudScoringError):
    """Input data lacks expected columns or holds values of the wrong type."""


class NoDataError(FraudScoringError):
    """The requested input (a table, a day's partition, a class) holds no rows."""


class ModelNotFoundError(FraudScoringError):
    """The registry has no model, version or alias by the requested name."""


class UnreadableInputError(FraudScoringError):
    """An input file cannot be read: damaged, truncated, or not in the format its name says."""


class ServiceUnavailableError(FraudScoringError):
    """A service the job depends on (the MLflow tracking server) cannot be reached in time.

    Not bad input: a scheduler may retry. Its own exit code tells the two apart.
    """

    exit_code = 3


class AccessDeniedError(ConfigError):
    """The MLflow tracking server refused the job's credentials (HTTP 401) or its user's
    permission (HTTP 403). Retrying does not help; the credentials or the grants must change."""


class PromotionRefusedError(FraudScoringError):
    """The promotion gate refused a version: the champion is unchanged (the decision is recorded).

    Not bad input and not a failure to retry: its own exit code.
    """

    exit_code = 4


class ModelNotPortableError(FraudScoringError):
    """A model cannot be released for scoring without Spark: a stage has no portable form, or
    the portable form's probabilities differ from Spark's beyond the release rule's tolerance.

    Raised at registration (the version is not registered), not when it is first served.
    """

    exit_code = 5


class NotAnAlertError(FraudScoringError):
    """retrain was asked to start from a day whose verdict is not 'alert' (or has none): nothing
    is trained and nothing is recorded."""


class ModelInputError(SchemaError):
    """Rows to score lack a feature column the model reads, hold it in a type that is not a
    number, or hold a value the model cannot take (null, NaN, infinite)."""


class InvalidInputError(SchemaError):
    """Input rows a table cannot take: a value outside its column's domain, or one id given with
    two different contents (within the input, or against the table)."""
