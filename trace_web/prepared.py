"""Statements on the hot path run as server-side prepared statements on Django's own
connection: planning a statement of several CTEs costs about as much as running it, and Django's
cursors bind parameters on the client, so they are never prepared."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connection


def fetchone_prepared(sql: str, params: list[Any]) -> tuple | None:
    """Run `sql` (psycopg placeholders) prepared, in the connection's current session and
    transaction, with Django's health check and error classes; its first row, if any."""
    # connection.cursor() connects, or replaces a connection that failed its health check.
    with connection.cursor(), connection.wrap_database_errors:
        cursor = psycopg.Cursor(connection.connection)
        try:
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchone() if cursor.description else None
        finally:
            cursor.close()
