"""Observability: the Prometheus `/metrics` endpoint (backlogs read from the databases at each
scrape) and JSON logs that carry the task a line was written for."""
