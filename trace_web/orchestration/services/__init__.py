"""Orchestration services: the only code that writes orchestration state."""
