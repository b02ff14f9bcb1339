"""Django's mysql backend with its connection in a thread of its own."""

from django.db.backends.mysql import base

from ..wrapper import OffloadDatabaseWrapper

__all__ = ["DatabaseWrapper"]


class DatabaseWrapper(OffloadDatabaseWrapper, base.DatabaseWrapper):
    """Django's mysql ``DatabaseWrapper``; every database call runs in the connection's lane."""
