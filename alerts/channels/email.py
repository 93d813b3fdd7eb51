"""Email: one message with a plain-text and an HTML part, through Django's email backend."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Sequence

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from .notice import Notice
from .outcome import AttemptOutcome, AttemptStatus

SUBJECT_PREFIX = "[Meterbook]"
SUBJECT_MAX = 200


def render_email(notice: Notice) -> tuple[str, str, str]:
    """(subject, text, html). Templates escape everything a notice carries; the text part
    renders with autoescape off because it is not HTML."""
    context = {"notice": notice, "actions": notice.all_actions()}
    # A header must be one line: newlines in a title would make Django refuse the mail.
    title = " ".join(notice.title.split())
    subject = f"{SUBJECT_PREFIX} {title}"[:SUBJECT_MAX]
    text = render_to_string("alerts/email/notice.txt", context)
    html = render_to_string("alerts/email/notice.html", context)
    return subject, text, html


def send_email(
    notice: Notice,
    *,
    to: Sequence[str],
    from_email: str | None = None,
    reply_to: Sequence[str] = (),
    connection=None,
) -> AttemptOutcome:
    """Send one notice; SMTP trouble becomes an outcome (5xx permanent, the rest retryable)."""
    started = time.monotonic()
    subject, text, html = render_email(notice)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=from_email or settings.DEFAULT_FROM_EMAIL,
        to=list(to),
        reply_to=list(reply_to),
        connection=connection,
    )
    message.attach_alternative(html, "text/html")

    def failed(status: AttemptStatus, code: str, exc: Exception, smtp_code=None):
        return AttemptOutcome(
            status,
            status_code=smtp_code,
            duration_ms=int((time.monotonic() - started) * 1000),
            error_code=code,
            error_message=f"{type(exc).__name__}: {exc}"[:500],
        )

    try:
        message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        return failed(AttemptStatus.FAILED_PERMANENT, "recipients_refused", exc)
    except smtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.smtp_code < 600
        status = AttemptStatus.FAILED_PERMANENT if permanent else AttemptStatus.FAILED
        return failed(status, "smtp_error", exc, exc.smtp_code)
    except (smtplib.SMTPException, OSError) as exc:
        return failed(AttemptStatus.FAILED, "smtp_unavailable", exc)
    return AttemptOutcome(
        AttemptStatus.DELIVERED, duration_ms=int((time.monotonic() - started) * 1000)
    )
