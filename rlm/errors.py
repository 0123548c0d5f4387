"""The one error tree of RLM Hypervisor.

Every failure a user can see is an :class:`RLMError`. Each subclass carries the API document's
error code and HTTP status, plus structured fields in ``details``::

    RLMError                      code               status
    ├── InvalidInput              INVALID_INPUT      400
    │   └── Conflict              CONFLICT           409   (extension: the state refuses it)
    ├── Unauthorized              UNAUTHORIZED       401
    ├── Forbidden                 FORBIDDEN          403
    ├── TaskNotFound              TASK_NOT_FOUND     404
    ├── WebhookNotFound           WEBHOOK_NOT_FOUND  404   (webhookId, deliveryId)
    ├── EvaluationNotFound        EVALUATION_NOT_FOUND 404 (runId)
    ├── TaskTimeout               TIMEOUT            408
    ├── QuotaExceeded             QUOTA_EXCEEDED     429   (resource, limit, used, resetTime)
    ├── RateLimited               RATE_LIMITED       429   (retryAfterS)
    └── InternalError             INTERNAL_ERROR     500
        ├── EngineUnavailable     INTERNAL_ERROR     500   (pid, host, path)
        └── SandboxError          INTERNAL_ERROR     500   (rlm.sandbox.errors)
            ├── SandboxUnavailable                         the OS cannot isolate it
            └── SandboxDead                                its process died or was killed

The server renders these in one handler; the SDK raises the same classes from a response body
(:func:`error_from_payload`).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ERRORS_BY_CODE",
    "Conflict",
    "EngineUnavailable",
    "EvaluationNotFound",
    "Forbidden",
    "InternalError",
    "InvalidInput",
    "QuotaExceeded",
    "RLMError",
    "RateLimited",
    "TaskNotFound",
    "TaskTimeout",
    "Unauthorized",
    "WebhookNotFound",
    "error_from_payload",
]


class RLMError(Exception):
    """Base of every error RLM Hypervisor reports.

    Args:
        message: A sentence for a person.
        details: Structured facts for a program (JSON-serialisable).

    Attributes:
        code: The API document's error code.
        status: The HTTP status that goes with ``code``.
    """

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        #: Extra HTTP headers for the error answer (``Retry-After``, ``RateLimit``...).
        self.headers: dict[str, str] = {}

    def to_payload(self) -> dict[str, Any]:
        """The ``error`` object of the API's JSON envelope."""
        payload: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            payload["details"] = self.details
        return payload

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (Ray); keep the details when pickled.
        return (self.__class__._restore, (self.message, self.details))

    @classmethod
    def _restore(cls, message: str, details: dict[str, Any]) -> RLMError:
        err = cls.__new__(cls)
        RLMError.__init__(err, message, details)
        return err

    def with_headers(self, headers: dict[str, str]) -> RLMError:
        """This error, with ``headers`` added to its HTTP answer."""
        self.headers.update(headers)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class InvalidInput(RLMError):
    """The request, an option or the input data is not valid (400)."""

    code = "INVALID_INPUT"
    status = 400

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, *, field: str | None = None
    ) -> None:
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, merged)


class Conflict(InvalidInput):
    """A well-formed request the current state refuses (409; an extension of the document).

    The same request could succeed against another state: a name already taken, an allocation
    the pool has no room for now, a cap below what the tree or this month's usage needs, a
    member that is not one, an ``Idempotency-Key`` used for another body, or a body naming
    another resource than its URL. It is an :class:`InvalidInput` to Python callers.
    """

    code = "CONFLICT"
    status = 409


class Unauthorized(RLMError):
    """No valid credentials were presented (401)."""

    code = "UNAUTHORIZED"
    status = 401


class Forbidden(RLMError):
    """The credentials are valid but do not allow this action (403)."""

    code = "FORBIDDEN"
    status = 403


class TaskNotFound(RLMError):
    """No task with this id exists for the caller (404)."""

    code = "TASK_NOT_FOUND"
    status = 404

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} does not exist", {"taskId": task_id})


class EvaluationNotFound(RLMError):
    """No evaluation run with this id exists for the caller (404).

    Another org's run answers the same, so ids cannot be probed.
    """

    code = "EVALUATION_NOT_FOUND"
    status = 404

    def __init__(self, run_id: str) -> None:
        super().__init__(f"evaluation run {run_id!r} does not exist", {"runId": run_id})


class WebhookNotFound(RLMError):
    """No webhook (or no delivery of it) with this id exists for the caller (404).

    Another tenant's webhook answers the same, so ids cannot be probed.
    """

    code = "WEBHOOK_NOT_FOUND"
    status = 404

    def __init__(self, webhook_id: str, delivery_id: str | None = None) -> None:
        if delivery_id is None:
            super().__init__(f"webhook {webhook_id!r} does not exist", {"webhookId": webhook_id})
        else:
            super().__init__(
                f"delivery {delivery_id!r} of webhook {webhook_id!r} does not exist",
                {"webhookId": webhook_id, "deliveryId": delivery_id},
            )


class TaskTimeout(RLMError):
    """The task ran past its ``timeoutMs`` and was stopped (408)."""

    code = "TIMEOUT"
    status = 408


class QuotaExceeded(RLMError):
    """A daily, weekly or monthly quota (or a pool) would be exceeded (429)."""

    code = "QUOTA_EXCEEDED"
    status = 429


class RateLimited(RLMError):
    """Too many requests for the caller's tier (429).

    Args:
        message: A sentence for a person.
        retry_after_s: Seconds until a retry can succeed.
        details: Extra structured facts.
    """

    code = "RATE_LIMITED"
    status = 429

    def __init__(
        self, message: str, retry_after_s: float = 1.0, details: dict[str, Any] | None = None
    ) -> None:
        merged = dict(details or {})
        merged.setdefault("retryAfterS", retry_after_s)
        super().__init__(message, merged)

    @property
    def retry_after_s(self) -> float:
        """Seconds until a retry can succeed."""
        return float(self.details.get("retryAfterS", 1.0))


class InternalError(RLMError):
    """Something failed inside the service (500)."""

    code = "INTERNAL_ERROR"
    status = 500


class EngineUnavailable(InternalError):
    """The engine could not be started or joined (500; the CLI exits 3).

    Raised by :func:`rlm.connect` when its state directory is held by a process it cannot
    join (``pid`` and ``host`` say which, when known), or when the engine did not come up.
    Its message is one sentence that says what to do. It shares ``INTERNAL_ERROR`` with its
    parent, so it is not in :data:`ERRORS_BY_CODE`.
    """


ERRORS_BY_CODE: dict[str, type[RLMError]] = {
    cls.code: cls
    for cls in (
        InvalidInput,
        Conflict,
        Unauthorized,
        Forbidden,
        TaskNotFound,
        WebhookNotFound,
        EvaluationNotFound,
        TaskTimeout,
        QuotaExceeded,
        RateLimited,
        InternalError,
    )
}


def error_from_payload(payload: dict[str, Any]) -> RLMError:
    """Rebuild the typed error from an ``error`` object of the API's envelope.

    Args:
        payload: ``{"code", "message", "details"?}``.

    Returns:
        An instance of the class registered for ``code`` (``RLMError`` for an unknown code).
    """
    cls = ERRORS_BY_CODE.get(str(payload.get("code")), RLMError)
    return cls._restore(str(payload.get("message", "")), dict(payload.get("details") or {}))
