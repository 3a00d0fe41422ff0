"""Persistent state: VM records and operation history in SQLite (WAL)."""
