"""Portal pages (webhooks): filled in by its owner."""

urlpatterns: list = []
