"""Portal pages (notifications): filled in by its owner."""

urlpatterns: list = []
