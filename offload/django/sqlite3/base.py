"""Django's sqlite3 backend with its connection in a thread of its own."""

from django.db.backends.sqlite3 import base

from ..wrapper import OffloadDatabaseWrapper

__all__ = ["DatabaseWrapper"]


class DatabaseWrapper(OffloadDatabaseWrapper, base.DatabaseWrapper):
    """Django's sqlite3 ``DatabaseWrapper``; every database call runs in the connection's lane."""
