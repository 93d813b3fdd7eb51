"""Staff views of tenants, people, keys and the audit log. Writes go through services."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from . import services
from .errors import DomainError
from .models import ApiKey, AuditLog, Contact, Customer, Membership, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active", "last_login"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ["user", "role", "invited_at", "accepted_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class ContactInline(admin.TabularInline):
    model = Contact
    fields = ["name", "persona", "email", "slack_webhook_url", "teams_webhook_url", "webhook_url"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["name", "external_id", "currency", "timezone", "status", "created_at"]
    list_filter = ["status", "currency"]
    search_fields = ["name", "external_id", "billing_email"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [MembershipInline, ContactInline]

    def save_model(self, request, obj, form, change):
        fields = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in services.CUSTOMER_UPDATABLE_FIELDS
        }
        if change:
            services.customer_update(actor=request.user, customer=obj, **fields)
        else:
            created = services.customer_create(
                actor=request.user,
                **{name: form.cleaned_data[name] for name in services.CUSTOMER_AUDIT_FIELDS},
            )
            obj.pk = created.pk

    def has_delete_permission(self, request, obj=None):
        # Customers carry usage and money; suspend them instead.
        return False


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "customer", "role", "invited_at", "accepted_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "customer__name", "customer__external_id"]
    list_select_related = ["user", "customer"]
    readonly_fields = [
        "user",
        "customer",
        "role",
        "invited_by",
        "invited_at",
        "invitation_sent_at",
        "accepted_at",
    ]

    def has_add_permission(self, request):
        # Team changes go through the portal's services, which audit and guard the last owner.
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["name", "customer", "persona", "email"]
    list_filter = ["persona"]
    search_fields = ["name", "email", "customer__name", "customer__external_id"]
    list_select_related = ["customer"]
    autocomplete_fields = ["customer"]
    raw_id_fields = ["user"]

    def save_model(self, request, obj, form, change):
        fields = {
            name: form.cleaned_data[name]
            for name in services.CONTACT_FIELDS
            if name in form.cleaned_data
        }
        try:
            if change:
                services.contact_update(actor=request.user, contact=obj, **fields)
            else:
                obj.pk = services.contact_create(
                    actor=request.user, customer=form.cleaned_data["customer"], **fields
                ).pk
        except DomainError as exc:
            messages.error(request, exc.message)

    def delete_model(self, request, obj):
        services.contact_delete(actor=request.user, contact=obj)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are visible, never their secrets (only a digest is stored anyway)."""

    list_display = [
        "name",
        "prefix",
        "kind",
        "environment",
        "customer",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["kind", "environment", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key_id", "customer__name", "customer__external_id"]
    list_select_related = ["customer"]
    fields = [
        "name",
        "prefix",
        "kind",
        "environment",
        "customer",
        "scopes",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    ]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(actor=request.user, api_key=key)
        messages.success(request, "Selected keys are revoked.")


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "actor_label",
        "action",
        "object_type",
        "object_repr",
        "customer_id",
    ]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_label", "action", "object_repr", "object_id"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditLog._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
