"""Bring platform rows in step with the code: staff groups and the periodic task schedule.

Run by the demo and by every deploy, after ``migrate``. Safe to run any number of times.
"""

from django.core.management.base import BaseCommand

from accounts.services import staff_groups_sync
from billing_project.schedules import periodic_tasks_sync


class Command(BaseCommand):
    help = "Sync staff groups and their permissions, and the periodic tasks in schedules.py."

    def handle(self, *args, **options):
        staff_groups_sync()
        report = periodic_tasks_sync()
        if options["verbosity"] >= 1:
            self.stdout.write(f"staff groups synced; {report}")
