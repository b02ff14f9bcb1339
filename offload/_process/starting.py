"""What multiprocessing needs of offload to start worker processes.

Its start machinery is built for programs that start processes from their
main module while it runs and never ``os.fork()`` themselves.  A pool also
starts processes in a forked child (a pre-fork server's worker) and while
the interpreter exits (for calls still queued then); these two functions
make both work, and are called by :mod:`offload._process.keeper`.
"""

import os
import sys

__all__ = ["reset_after_fork", "restore_main_path"]


def restore_main_path(path: str | None) -> None:
    """Put back ``__main__.__file__``, which CPython deletes once the script
    has run: multiprocessing needs it to let a child import the script's
    functions, and the interpreter's exit still starts processes for the
    calls queued then."""
    main = sys.modules.get("__main__")
    if path is not None and main is not None and getattr(main, "__file__", None) is None:
        if getattr(main, "__spec__", None) is None:  # a script, not ``python -m``
            main.__file__ = path


def reset_after_fork() -> None:
    """Give a forked child multiprocessing start machinery of its own.

    multiprocessing's forkserver is a process-wide singleton that belongs to
    the process that started it: in a forked child its pid is not a child of
    ours, so the next start fails with ``ChildProcessError: No child
    processes`` (os.waitpid in ``ensure_running``), and its lock may have
    been held by a parent thread that does not exist here.  multiprocessing
    resets it only for its own ``fork`` start method, not for ``os.fork()``.
    The singleton is reset in place -- the module's ``ensure_running`` and
    ``connect_to_new_process`` are its bound methods -- to what a new
    ``ForkServer()`` holds (whatever this Python's version keeps there),
    keeping the preload list; the child then starts a forkserver of its own
    on first use.  Its copy of the parent's "alive" pipe end is closed, or
    the parent's forkserver would live until this child exits.  The
    resource tracker is shared with the parent, as multiprocessing's own
    fork start shares it; only its lock is new.  Nothing is imported here:
    a module not loaded yet has no state to reset.
    """
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is not None:
        server = forkserver._forkserver
        alive = getattr(server, "_forkserver_alive_fd", None)
        fresh = forkserver.ForkServer()
        fresh._preload_modules = getattr(server, "_preload_modules", fresh._preload_modules)
        server.__dict__.update(fresh.__dict__)
        if alive is not None:
            try:
                os.close(alive)
            except OSError:
                pass
    tracking = sys.modules.get("multiprocessing.resource_tracker")
    if tracking is not None:
        tracker = tracking._resource_tracker
        tracker._lock = tracking.ResourceTracker()._lock
