"""Migrations of the demo project."""
