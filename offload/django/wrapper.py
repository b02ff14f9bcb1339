"""The one change every offload Django backend makes: where its connection lives."""

from typing import Any

from .. import dbapi

__all__ = ["OffloadDatabaseWrapper"]


class _Opener:
    """Quacks like the driver module for :func:`offload.dbapi.connect`.

    Its ``connect()`` is Django's own ``get_new_connection``, so that the
    driver's connect *and* Django's set-up of the new connection run in the
    connection's lane, on the real connection.  Everything else (the
    exception classes, ``__name__``) is the driver's.
    """

    def __init__(self, database: Any, open_connection: Any) -> None:
        self._database = database
        self.__name__ = database.__name__
        self.connect = open_connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._database, name)


class OffloadDatabaseWrapper:
    """Mixin before a Django ``DatabaseWrapper``: its connection is an :class:`offload.dbapi.Connection`."""

    Database: Any
    settings_dict: dict

    def get_new_connection(self, conn_params: dict) -> Any:
        if self.settings_dict.get("OPTIONS", {}).get("pool"):
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                "OPTIONS['pool'] must not be set with an offload.django backend, not "
                f"{self.settings_dict['OPTIONS']['pool']!r}: psycopg_pool's connections cannot keep "
                "a thread each; use CONN_MAX_AGE for reuse instead"
            )
        stock = super().get_new_connection  # type: ignore[misc]
        opener: Any = _Opener(self.Database, lambda: stock(conn_params))  # a module in all but type
        return dbapi.connect(opener)
