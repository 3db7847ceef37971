"""Operator implementations: plain functions of a TaskContext. They import neither Django nor
Celery, so they can be tested and benchmarked alone."""
