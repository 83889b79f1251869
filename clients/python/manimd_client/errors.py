"""Typed errors: every failure the server reports carries its stable `code`,
its `message` and, for a scene's own faults, the author's `line`."""

from __future__ import annotations

from typing import Any

from ._types import ErrorDetail, JobView


class ManimdError(Exception):
    """Any failure of a call or a job.

    `code` is the server's stable, kebab-case code (`scene-error`,
    `syntax-error`, `queue-full`, ...); `line` and `column` point into the
    scene's code when the error is the scene's; `details` holds the code's
    further fields (`exception`, `traceback`, `available`, ...).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.line = line
        self.column = column
        self.field = field
        self.details = details or {}
        self.status = status
        self.retry_after = retry_after
        # The scene's lines around `line`, when a caller that has the code
        # (the notebook magic) adds them; shown under the error.
        self.context: list[str] = []

    @classmethod
    def from_detail(cls, detail: ErrorDetail, **kw: Any) -> ManimdError:
        return cls(
            detail.code,
            detail.message,
            line=detail.line,
            column=detail.column,
            field=detail.field,
            details=dict(detail.extra),
            **kw,
        )

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a Python traceback: the typed
        error, the scene's own frames and the lines around `line`."""
        lines = [f"{type(self).__name__}: [{self.code}] {self.message}"]
        frames = self.details.get("traceback")
        if isinstance(frames, list):
            for f in frames:
                if isinstance(f, dict):
                    lines.append(f"  {f.get('file')}, line {f.get('line')}, in {f.get('function')}: "
                                 f"{f.get('code', '')}")
        if self.details.get("tex_error"):
            lines.append(str(self.details["tex_error"]).rstrip())
        if self.context:
            lines += [""] + self.context
        return lines


class TransportError(ManimdError):
    """The server could not be reached, or the connection broke."""

    def __init__(self, message: str):
        super().__init__("transport", message)


class UnexpectedResponse(ManimdError):
    """An answer the API does not give (a proxy's page, a cut body)."""

    def __init__(self, status: int, body: str):
        super().__init__("unexpected-response", f"HTTP {status}: {body[:500]}", status=status)
        self.body = body


class ApiError(ManimdError):
    """The server refused a call with its typed error body; `status` is the
    HTTP status. Subclasses name the statuses."""


class InvalidRequest(ApiError):
    """400: a malformed request (`field` names the culprit)."""


class Unauthorized(ApiError):
    """401: API keys are configured and none or a wrong one was sent."""


class NotFound(ApiError):
    """404: no such job or preview, or not this key's."""


class NotReady(ApiError):
    """409: the job has no video (yet)."""


class PayloadTooLarge(ApiError):
    """413: the request body is over the server's limit."""


class Unprocessable(ApiError):
    """422: the scene cannot render (`syntax-error`, `scene-error`, ...),
    with its `line`."""


class TooManyRequests(ApiError):
    """429: queue full, rate limit, quota, busy; `retry_after` in seconds."""


class ServerError(ApiError):
    """500: the installation's fault, never the scene's."""


class UpstreamError(ApiError):
    """502 or 504: the model provider or the speech service failed."""


class Unavailable(ApiError):
    """503: shutting down, storage unreachable, no model configured;
    `retry_after` when trying again helps."""


STATUS_ERRORS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    409: NotReady,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: TooManyRequests,
    500: ServerError,
    502: UpstreamError,
    503: Unavailable,
    504: UpstreamError,
}


class JobFailed(ManimdError):
    """A job ended `failed`: its typed error, and the job (`job`)."""

    def __init__(self, job: JobView):
        error = job.error or {}
        detail = ErrorDetail.from_json(
            {"code": error.get("code", "unknown"), "message": error.get("message", ""), **error}
        )
        super().__init__(
            detail.code,
            detail.message,
            line=detail.line,
            column=detail.column,
            field=detail.field,
            details=dict(detail.extra),
        )
        self.job = job


class JobCanceled(JobFailed):
    """A job ended `canceled`."""


def api_error(status: int, body: bytes, retry_after: str | None) -> ManimdError:
    """The typed error of a refused call, from its status and body."""
    import json

    try:
        detail = ErrorDetail.from_json(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return UnexpectedResponse(status, body.decode("utf-8", "replace"))
    cls = STATUS_ERRORS.get(status, ApiError)
    wait = None
    if retry_after is not None:
        try:
            wait = float(retry_after)
        except ValueError:
            wait = None
    return cls.from_detail(detail, status=status, retry_after=wait)
