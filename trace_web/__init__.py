"""Trace control plane: the Django project (orgs, DAGs, tasks, datasets, REST API).

Importing this package loads nothing heavy; Django apps live in subpackages.
"""
