"""Hooks: each owns one Airflow connection and the client that speaks to its service."""
