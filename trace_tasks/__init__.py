"""Celery side of Trace: the app, queue routing, the worker wrapper and the dispatcher loops."""
