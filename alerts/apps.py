from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self):
        from invoicing import hooks as invoicing_hooks
        from metering import hooks

        from .selectors.outlook import projected_cost, usage_outlook
        from .services import caps_guard
        from .services.evaluation import on_usage_recorded

        # Hard caps act inside ingestion; thresholds are checked as soon as it commits
        # (metering never imports alerts).
        hooks.register_ingest_guard(caps_guard)
        hooks.register_usage_recorded(on_usage_recorded)
        # The forecast band on the usage dashboard and the projected cost on the billing page.
        hooks.register_forecast_provider(usage_outlook)
        invoicing_hooks.register_projected_cost(projected_cost)
