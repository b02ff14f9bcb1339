"""offload: run blocking and CPU-heavy calls off the gevent hub.

A greenlet hands a call to a pool of real OS threads and waits; only that
greenlet waits, the hub keeps running every other one.  See the README and
``docs/`` for the whole story.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .decorator import offload
from .defaults import call, get_default_pool, submit
from .future import Future
from .heartbeat import Heartbeat, ProbeResult, probe
from .proxy import Proxy, unwrap
from .threadpool import ThreadPool
from .waiting import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait
from .wrap import wrap_executor

if TYPE_CHECKING:
    from .processpool import ProcessPool, WorkerCrashed, get_default_process_pool

# Imported on first use, so that ``import offload`` does not import
# multiprocessing (tens of milliseconds) for programs that use threads only.
_LAZY = {"ProcessPool", "WorkerCrashed", "get_default_process_pool"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import processpool

        return getattr(processpool, name)
    raise AttributeError(f"module 'offload' has no attribute {name!r}")


__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Future",
    "Heartbeat",
    "ProcessPool",
    "ProbeResult",
    "Proxy",
    "ThreadPool",
    "WorkerCrashed",
    "as_completed",
    "call",
    "get_default_pool",
    "get_default_process_pool",
    "offload",
    "probe",
    "submit",
    "unwrap",
    "wait",
    "wrap_executor",
]
