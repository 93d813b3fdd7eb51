"""A channel-neutral message: what every channel renders in its own format."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def label(self) -> str:
        return self.value.capitalize()


@dataclass(frozen=True, slots=True)
class NoticeAction:
    """A link button: "Raise my cap", "See the commitment option"."""

    label: str
    url: str


@dataclass(frozen=True, slots=True)
class Notice:
    """One alert as a person reads it; the router fills `body` for the reader's persona
    (technical details for a developer, budget impact for finance, a line for executives)."""

    title: str
    summary: str
    severity: Severity = Severity.INFO
    # (label, value) pairs shown as a table: ("Meter", "api_calls"), ("Remaining", "1,200").
    facts: tuple[tuple[str, str], ...] = ()
    body: str = ""
    link_url: str = ""
    link_label: str = "Open in Meterbook"
    actions: tuple[NoticeAction, ...] = field(default=())

    def all_actions(self) -> tuple[NoticeAction, ...]:
        """The main link first, then the contextual options; only http(s) links, so no
        `javascript:` URL reaches an email's href or a card's button."""
        main = (NoticeAction(self.link_label, self.link_url),) if self.link_url else ()
        return tuple(a for a in main + tuple(self.actions) if _is_web_url(a.url))


def _is_web_url(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))
