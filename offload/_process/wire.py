"""What crosses the pipe between a ProcessPool and its worker processes.

Messages are framed by an 8-byte length; an empty one tells a child to exit.
A call travels as a pickle of ``(fn, args, kwargs, context values)``, made in the caller so
that an unpicklable one fails there at once.  An answer is one tag byte --
a value, an exception (with its type name, message and traceback text, so it
survives even when the exception itself cannot be unpickled), or a result
that could not be pickled -- followed by a pickle.  The child's side of the
conversation is in :mod:`offload._process.child`, the parent's in
:mod:`offload._process.keeper`.
"""

import importlib
import io
import pickle
import struct
from itertools import islice
from types import FunctionType

from .._core.checks import name_of
from .carry import carried

HEADER = struct.Struct("!Q")
STOP = HEADER.pack(0)
VALUE, RAISED, UNSENDABLE = 0, 1, 2  # the first byte of every answer
PROTOCOL = pickle.HIGHEST_PROTOCOL


class RemoteTraceback(Exception):
    """The traceback, as text, of an exception raised in a worker process.

    It is set as the ``__cause__`` of the re-raised exception, so the
    child's frames are printed above the caller's.
    """

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return "\n\n" + self.text


def _unwrapped(module, qualname):
    """The function that ``module.qualname`` wraps (see :class:`_WrapperAwarePickler`)."""
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj.__wrapped__


class _WrapperAwarePickler(pickle.Pickler):
    """Pickles a function hidden behind a decorator of the same name.

    ``@offload(pool="process")`` replaces ``f`` in its module by a wrapper
    that hands the original function to the pool; pickle would refuse it
    ("not the same object as module.f").  This pickler sends it as "the
    ``__wrapped__`` of ``module.f``" instead.  It is only the fallback when
    plain pickling fails, because a Python hook on every object is slow.
    """

    def reducer_override(self, obj):
        if type(obj) is FunctionType:
            module = getattr(obj, "__module__", None)
            qualname = getattr(obj, "__qualname__", "")
            if module and "<locals>" not in qualname:
                try:
                    found = _unwrapped(module, qualname)
                except Exception:
                    return NotImplemented
                if found is obj:
                    return _unwrapped, (module, qualname)
        return NotImplemented


def dumps(obj):
    """Pickle *obj*, falling back to :class:`_WrapperAwarePickler` if plain pickle refuses."""
    try:
        return pickle.dumps(obj, PROTOCOL)
    except Exception as first:
        buffer = io.BytesIO()
        try:
            _WrapperAwarePickler(buffer, PROTOCOL).dump(obj)
        except Exception:
            raise first from None
        return buffer.getvalue()


def pack_call(fn, args, kwargs, context=None):
    """The message that asks a child to run ``fn(*args, **kwargs)``, with what
    of the caller's *context* can travel (see :mod:`offload._process.carry`)."""
    values = carried(context) if context is not None else ()
    try:
        body = dumps((fn, args, kwargs, values))
    except Exception as exc:
        raise pickle.PicklingError(
            f"cannot send {name_of(fn)} and its arguments to a worker process: {exc} "
            "(functions must be importable by name, arguments and results picklable)"
        ) from exc
    return HEADER.pack(len(body)) + body


def chunks(iterables, size):
    """Lists of up to *size* argument tuples, zipped from *iterables*."""
    items = zip(*iterables)  # noqa: B905 - stops at the shortest, as map() does
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield chunk


def decode(answer, name):
    """(value, error) from a child's answer."""
    kind = answer[0]
    body = memoryview(answer)[1:]
    try:
        if kind == VALUE:
            return pickle.loads(body), None
        if kind == UNSENDABLE:
            return None, pickle.PicklingError(pickle.loads(body))
        pickled, type_name, message, text = pickle.loads(body)
    except Exception as exc:
        failure = pickle.UnpicklingError(f"cannot load what the worker process sent back for {name}: {exc}")
        failure.__cause__ = exc
        return None, failure
    error: BaseException | None = None
    if pickled is not None:
        try:
            error = pickle.loads(pickled)
        except Exception:
            error = None
        if not isinstance(error, BaseException):
            error = None
    if error is None:
        error = RuntimeError(f"{type_name}: {message} (raised in a worker process; cannot be sent back)")
    error.__cause__ = RemoteTraceback(text)
    return None, error


def take_message(buffer):
    """Remove and return the first whole message in *buffer*, if there is one."""
    if len(buffer) < HEADER.size:
        return None
    (size,) = HEADER.unpack_from(buffer)
    end = HEADER.size + size
    if len(buffer) < end:
        return None
    message = bytes(buffer[HEADER.size : end])
    del buffer[:end]
    return message
