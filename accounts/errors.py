"""Domain errors raised by services; the API and the portal turn them into responses.

Each carries a machine-readable ``code``, a human ``message``, the ``field`` it concerns
(if any) and the HTTP status it maps to, so every caller reports it the same way.
"""


class DomainError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.field = field


class InvalidInput(DomainError):
    status = 400
    code = "invalid"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class TooLarge(DomainError):
    status = 413
    code = "payload_too_large"
