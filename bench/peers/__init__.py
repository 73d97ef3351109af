"""Peer engines for scenario f, each behind a small driver: DBOS (SQLite) and Celery (Redis)."""
