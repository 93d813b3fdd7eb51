"""Caps in the admin, read-only: customers set them (portal, API), every change audited by
the service; staff look."""

from django.contrib import admin

from invoicing.admin._shared import ReadOnlyInline
from metering.admin import ReadOnlyAdmin

from .models import Cap, CapWindow


class CapWindowInline(ReadOnlyInline):
    model = CapWindow
    fields = ["period_start", "period_end", "limit", "used", "reserved"]
    readonly_fields = fields
    ordering = ["-period_start"]


@admin.register(Cap)
class CapAdmin(ReadOnlyAdmin):
    list_display = ["customer", "meter", "limit", "on_exceed", "updated_at"]
    list_filter = ["on_exceed", "meter"]
    list_select_related = ["customer", "meter"]
    search_fields = ["customer__name", "customer__external_id", "meter__code"]
    fields = ["customer", "meter", "limit", "on_exceed", "created_at", "updated_at"]
    readonly_fields = fields
    inlines = [CapWindowInline]
