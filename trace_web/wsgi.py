"""WSGI entry point for the Trace web server (gunicorn / runserver)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trace_web.settings")
application = get_wsgi_application()
