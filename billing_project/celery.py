"""The Celery app. Queues are named per concern; tasks are routed by their module."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings.development")

app = Celery("billing_project")
app.config_from_object("django.conf:settings", namespace="CELERY")

QUEUES = ("default", "ingest", "alerts", "billing", "notifications")
app.conf.task_queues = [Queue(name) for name in QUEUES]
app.conf.task_routes = {
    "accounts.tasks.*": {"queue": "notifications"},
    "metering.tasks.*": {"queue": "ingest"},
    "invoicing.tasks.*": {"queue": "billing"},
    # Sending is notification work; evaluating rules and caps is the alert queue's.
    "alerts.tasks.delivery_send": {"queue": "notifications"},
    "alerts.tasks.deliveries_sweep": {"queue": "notifications"},
    "alerts.tasks.*": {"queue": "alerts"},
    "revenue.tasks.*": {"queue": "billing"},
}
app.autodiscover_tasks()
