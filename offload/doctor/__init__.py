"""``python -m offload doctor``: measure whether your drivers block the hub.

"After monkey patching, will my driver still block?" is answered here by
measuring instead of guessing.  The doctor reports what gevent patched, then
for each driver it was pointed at runs one slow server-side call (the server
waits; the client only waits for the answer) twice under :func:`offload.probe`:
directly, as the application would, and through offload.  A driver that
freezes the hub directly shows the whole wait as heartbeat lag.  It also
checks the process for mistakes that block or hang silently
(:func:`environment`).

The package's parts: :mod:`.redact` (credentials are never printed),
:mod:`.checks` (the :class:`Check` record), :mod:`.drivers` (one check per
driver), :mod:`.environment` (with :mod:`.fork` and :mod:`.versions`; each
check's result is a :class:`Finding`), :mod:`.report` and :mod:`.cli`.
"""

from .checks import CONNECT_TIMEOUT, READ_TIMEOUT, SLEEP, THRESHOLD, Check, Row, Unreachable
from .cli import PATCHES, main
from .drivers import check_mongo, check_mysql, check_postgres, check_redis, check_sqlite, check_time
from .environment import environment
from .finding import Finding
from .redact import redact
from .report import patch_state, render, run

__all__ = [
    "main",
    "patch_state",
    "redact",
    "Row",
    "environment",
    "Finding",
    "Check",
    "Unreachable",
    "run",
    "render",
    "PATCHES",
    "SLEEP",
    "THRESHOLD",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "check_time",
    "check_postgres",
    "check_mysql",
    "check_sqlite",
    "check_redis",
    "check_mongo",
]
