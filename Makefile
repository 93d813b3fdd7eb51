# Meterbook: two commands for a newcomer, `make demo` and `make test`.
# Both create .venv and install the project into it (again only when pyproject.toml
# changes), then hand over to billing_project.launcher, which uses DATABASE_URL /
# CELERY_BROKER_URL when set and an embedded PostgreSQL / Redis under ./var otherwise.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CHROMIUM := /usr/lib/chromium/chromium
LAUNCH := $(PY) -m billing_project.launcher
# Extra pytest arguments: make test PYTEST_ARGS="-k keys -x"
PYTEST_ARGS ?=
# Throwaway values so the production settings load for `check --deploy`.
DEPLOY_CHECK_ENV := DJANGO_SETTINGS_MODULE=billing_project.settings.production \
	SECRET_KEY=make-checks-throwaway-secret-key-0123456789-abcdefghijklmnop \
	ALLOWED_HOSTS=meterbook.example.com

.PHONY: demo test lint format checks stop chromium install

demo: $(STAMP)
	$(LAUNCH) demo

test: $(STAMP) chromium
	$(LAUNCH) test $(PYTEST_ARGS)

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The browser tests drive the system Chromium (Debian package), never a downloaded one.
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's chromium for the browser tests (about 35 s)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "NOTE: $(CHROMIUM) is missing, so the browser tests will be skipped."; \
		echo "      Install it with: sudo apt-get install chromium (Debian/Ubuntu)"; \
	fi

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

checks: $(STAMP)
	$(LAUNCH) run -- $(PY) manage.py makemigrations --check --dry-run
	$(DEPLOY_CHECK_ENV) $(LAUNCH) run -- $(PY) manage.py check --deploy --fail-level WARNING

# Stop the embedded PostgreSQL and Redis (normally the launcher does this on exit).
stop: $(STAMP)
	$(LAUNCH) stop
