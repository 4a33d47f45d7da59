"""Durable node state: the SQLite store and the node processes that use it."""
