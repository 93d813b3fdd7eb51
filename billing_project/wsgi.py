import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings.development")

application = get_wsgi_application()

# Everything loaded so far (modules, models, settings) lives as long as the process. Move
# it out of the collector's sight: otherwise each full collection rescans ~200k objects,
# and a 10,000-event ingest batch allocates enough to trigger several (about 15% of its time).
gc.freeze()
