"""offload: run blocking and CPU-heavy calls off the gevent hub.

A greenlet hands a call to a pool of real OS threads and waits; only that
greenlet waits, the hub keeps running every other one.  See the README and
``docs/`` for the whole story.
"""

from ._version import __version__ as __version__
from .decorator import offload
from .executor import call, get_default_pool, submit, wrap_executor
from .future import Future
from .heartbeat import Heartbeat, ProbeResult, probe
from .processpool import ProcessPool, WorkerCrashed, get_default_process_pool
from .proxy import Proxy, unwrap
from .threadpool import ThreadPool

__all__ = [
    "Future",
    "Heartbeat",
    "ProcessPool",
    "ProbeResult",
    "Proxy",
    "ThreadPool",
    "WorkerCrashed",
    "call",
    "get_default_pool",
    "get_default_process_pool",
    "offload",
    "probe",
    "submit",
    "unwrap",
    "wrap_executor",
]
