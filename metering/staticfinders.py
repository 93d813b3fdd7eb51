"""Serve plotly.js from the plotly wheel, one file only, never from a CDN.

The wheel's ``package_data`` folder also holds ~5 MB of other files (a widget bundle,
datasets); a ``STATICFILES_DIRS`` entry would make ``collectstatic`` copy them all. This
finder exposes just ``plotly/plotly.min.js``.
"""

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import Error
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = "plotly/plotly.min.js"
_FOLDER = Path(plotly.__file__).resolve().parent / "package_data"
_FILE = "plotly.min.js"


class PlotlyJsFinder(BaseFinder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=_FOLDER)
        # collectstatic puts the file under this prefix: STATIC_ROOT/plotly/plotly.min.js.
        self.storage.prefix = "plotly"

    def check(self, **kwargs):
        if not (_FOLDER / _FILE).is_file():
            return [
                Error(
                    f"{_FOLDER / _FILE} is missing: the plotly package is incomplete.",
                    id="metering.E001",
                )
            ]
        return []

    # RemovedInDjango61Warning: ``all`` is the old name of ``find_all``.
    def find(self, path, find_all=False, **kwargs):
        find_all = find_all or kwargs.get("all", False)
        if path != PLOTLY_JS:
            return [] if find_all else None
        match = str(_FOLDER / _FILE)
        return [match] if find_all else match

    def list(self, ignore_patterns):
        yield _FILE, self.storage
