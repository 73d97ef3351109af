"""Tracebacks as a user reads them (kept in :mod:`deerflow._userfile`)."""

from deerflow._userfile import as_python_shows, users_frames

__all__ = ["as_python_shows", "users_frames"]
