from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self):
        from metering import hooks

        from .services import caps_guard

        # Hard caps act inside ingestion (metering never imports alerts).
        hooks.register_ingest_guard(caps_guard)
