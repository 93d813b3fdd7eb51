"""Email through Django's SMTP backend to a real SMTP server (aiosmtpd) on loopback."""

import email
from email import policy

from alerts.channels import AttemptStatus, Notice, NoticeAction, Severity, render_email, send_email
from tests.alerts.receivers import free_port

NOTICE = Notice(
    title='Projected invoice passes budget <script>alert("x")</script>',
    summary="The projected invoice is $12,400 (range $11,900 to $13,100).",
    severity=Severity.CRITICAL,
    facts=(("Commitment", "$10,000 / month"), ("Projected", "$12,400 & rising")),
    body="An annual commitment at the next tier would cost $9,800 a month.\nIt saves $2,600.",
    link_url="https://app.meterbook.example/portal/alerts/7?a=1&b=2",
    actions=(NoticeAction("Compare plans", "https://app.meterbook.example/plans"),),
)


def test_email_arrives_with_text_and_html_parts(smtp):
    outcome = send_email(NOTICE, to=["finance@alpha.example.com"])
    assert outcome.status == AttemptStatus.DELIVERED
    (envelope,) = smtp.messages
    assert envelope.mail_from == "alerts@meterbook.example"
    assert envelope.rcpt_tos == ["finance@alpha.example.com"]
    message = email.message_from_bytes(envelope.original_content, policy=policy.default)
    assert message["Subject"].startswith("[Meterbook] Projected invoice passes budget")
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()

    # Plain text: verbatim, not HTML-escaped.
    assert '<script>alert("x")</script>' in text
    assert "Projected: $12,400 & rising" in text
    assert "https://app.meterbook.example/portal/alerts/7?a=1&b=2" in text
    assert "Compare plans: https://app.meterbook.example/plans" in text

    # HTML: everything from the notice escaped; no external assets.
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "$12,400 &amp; rising" in html
    assert 'href="https://app.meterbook.example/portal/alerts/7?a=1&amp;b=2"' in html
    assert "saves $2,600" in html and "<br>" in html
    for external in ("<img", "<link", "src=", "url(", "@import"):
        assert external not in html


def test_a_refused_recipient_is_a_permanent_failure(smtp):
    smtp.refuse_rcpt = True
    outcome = send_email(NOTICE, to=["nobody@alpha.example.com"])
    assert outcome.status == AttemptStatus.FAILED_PERMANENT
    assert outcome.error_code == "recipients_refused"
    assert smtp.messages == []


def test_no_smtp_server_is_a_retryable_failure(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()
    settings.EMAIL_TIMEOUT = 2
    outcome = send_email(NOTICE, to=["finance@alpha.example.com"])
    assert outcome.status == AttemptStatus.FAILED and outcome.retryable
    assert outcome.error_code == "smtp_unavailable"


def test_a_title_with_newlines_still_makes_a_one_line_subject():
    subject, _text, _html = render_email(Notice(title="Cap\r\nBcc: evil@example.com", summary="s"))
    assert subject == "[Meterbook] Cap Bcc: evil@example.com"
