"""What one delivery attempt came to, in a form the outbox can store and act on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Enough of a receiver's answer to diagnose it from the admin, never a whole page.
EXCERPT_CHARS = 500


class AttemptStatus(StrEnum):
    DELIVERED = "delivered"
    # Worth another try later (timeouts, 5xx, 429, redirects, network trouble).
    FAILED = "failed"
    # The same request would keep failing (4xx other than the retryable ones).
    FAILED_PERMANENT = "failed_permanent"
    # HTTP 410: the receiver says the endpoint is gone; the caller disables it.
    ENDPOINT_GONE = "endpoint_gone"
    # Never sent: the URL is malformed or points somewhere we must not reach (SSRF).
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    status: AttemptStatus
    status_code: int | None = None
    response_excerpt: str = ""
    duration_ms: int = 0
    error_code: str = ""
    error_message: str = ""
    # Seconds the receiver asked us to wait (Retry-After on 429/503), if it said.
    retry_after_seconds: int | None = None

    @property
    def delivered(self) -> bool:
        return self.status == AttemptStatus.DELIVERED

    @property
    def retryable(self) -> bool:
        return self.status == AttemptStatus.FAILED


class OutboundRefused(Exception):
    """A URL or address we will not connect to; `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
