"""Experts that are programs rather than models (oracle and scripted policies)."""
