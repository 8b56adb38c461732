"""The one exception root of sfls, and what each branch means for the caller.

- ConfigError: a setting or mapping is wrong. Raised at start-up; the process exits non-zero
  with the message, which names the field and the fix.
  AuthorizationError is one: Kafka refuses an operation (a missing ACL), never retried.
- TransientError: the call may succeed later (429, 5xx, timeouts, connection errors). Retried
  with backoff; `retry_after` carries the server's requested delay when it gave one.
- PermanentError: retrying cannot help (validation errors, mapping errors, bad input). The
  event goes to a dead-letter topic at once, with `reason` as its readable cause.
  CurrencyError is one: a multi-currency account whose currency LogiSense cannot take.

BudgetExhaustedError is outside that root on purpose: no handler of one record's failure may take it for
one (it is not a record's fault, and nothing may be dead-lettered for it); it ends a bulk command with
exit code 3 (services/command.py).
"""

from __future__ import annotations


class SflsError(Exception):
    """Root of every error sfls raises on purpose."""


class ConfigError(SflsError):
    """A setting, mapping or config file is invalid; the message names it and says how to fix it."""


class AuthorizationError(ConfigError):
    """Kafka refuses an operation to our principal; the message names the operation, the resource and the fix."""


class TransientError(SflsError):
    """A failure that may succeed on retry; `retry_after` is the delay the server asked for, if any."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AuthExpiredError(TransientError):
    """The access token was refused; the caller refreshes it once and tries again."""


class PermanentError(SflsError):
    """A failure no retry can fix; the event is dead-lettered with this reason."""

    def __init__(self, message: str, *, status: int | None = None, response_excerpt: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.response_excerpt = response_excerpt


class RetriesExhaustedError(PermanentError):
    """A transient failure outlived the retry budget; carries the attempts and the timing (shared/retry.py)."""

    def __init__(self, last: TransientError, attempts: int, first_failure: float, last_failure: float) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last}", status=last.status)
        self.last = last
        self.attempts = attempts
        self.first_failure = first_failure
        self.last_failure = last_failure


class RejectedError(PermanentError):
    """The remote system rejected the content of a request (LogiSense 400, Salesforce field errors)."""


class MappingError(PermanentError):
    """A record cannot be mapped (unknown reference name, split invoice recipients, bad value)."""


class DependencyFailedError(PermanentError):
    """An account was not synced only because an account it references (parent, invoice recipient) failed.

    `dependency` is that account's Salesforce id, `dependency_error_class` the class of its own failure.
    """

    def __init__(self, message: str, *, dependency: str, dependency_error_class: str) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.dependency_error_class = dependency_error_class


class CurrencyError(PermanentError):
    """A multi-currency org's account whose currency LogiSense cannot take; nothing of that account is written.

    Either its currency differs from the one its LogiSense account already has (LogiSense cannot change an
    account's currency once set), or from the LogiSense currency of its parent or invoice recipient (a parent
    and its children share one currency). The message names both currencies and the fix.
    """


class MalformedMessageError(PermanentError):
    """An inbound message (CDC event, change event) does not have the expected shape."""


class BudgetExhaustedError(Exception):
    """Bulk work waited `budget.max_pause_seconds` for the Salesforce org's API budget (shared/budget.py)."""
