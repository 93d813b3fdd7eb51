"""Portal pages (guardrails): filled in by its owner."""

urlpatterns: list = []
