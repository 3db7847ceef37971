#!/usr/bin/env python
"""Django's command-line utility for Trace operators (sync_dag, run_job, migrate, ...)."""

import os
import sys


def main() -> None:
    from trace_web.lite.envfile import load_lite_env

    load_lite_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trace_web.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
