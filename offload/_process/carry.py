"""What of the caller's :mod:`contextvars` travels with a process call.

A thread pool runs each call in a copy of its caller's context.  A process
cannot share it, so a ProcessPool call carries a copy of what can cross a
pipe: the value of every :class:`~contextvars.ContextVar` that is set in the
caller's context, that is a module-level name (so that the child can find
the same variable: ``module.NAME``; a script's ``__main__`` counts, as the
child imports the script too, but not that of ``python -c``), and whose
value pickles.  Anything else
is skipped, silently: variables made inside functions, and values such as
locks or connections.  In the child the call runs in a fresh copy of the
child's context with those values set, so nothing it sets leaks into the
next call.
"""

import contextvars
import importlib
import pickle
import sys
from typing import Any

__all__ = ["carried", "run_with"]

# Where each ContextVar lives, as (module name, attribute), or None when it
# is no module's attribute; looked up once per variable.
_places: dict[contextvars.ContextVar, tuple[str, str] | None] = {}


def _place(var: contextvars.ContextVar) -> tuple[str, str] | None:
    try:
        return _places[var]
    except KeyError:
        pass
    found = None
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not namespace:
            continue
        for attribute, value in list(namespace.items()):
            if value is var:
                found = (module_name, attribute)
                break
        if found:
            break
    _places[var] = found
    return found


def carried(context: contextvars.Context) -> tuple:
    """The (module, attribute, value) of each variable of *context* that can travel."""
    if not context:
        return ()  # the common case: nothing set
    out = []
    for var, value in context.items():
        place = _place(var)
        if place is None:
            continue
        try:
            pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except Exception:
            continue  # unpicklable: skipped, as documented
        out.append((*place, value))
    return tuple(out)


def run_with(values: tuple, fn: Any, args: tuple, kwargs: dict) -> Any:
    """In the child: ``fn(*args, **kwargs)`` in a fresh context holding *values*."""
    if not values:
        return fn(*args, **kwargs)
    return contextvars.copy_context().run(_set_and_call, values, fn, args, kwargs)


def _set_and_call(values, fn, args, kwargs):
    for module_name, attribute, value in values:
        try:
            var = getattr(importlib.import_module(module_name), attribute)
        except Exception:
            continue  # not importable here: skipped
        if isinstance(var, contextvars.ContextVar):
            var.set(value)
    return fn(*args, **kwargs)
