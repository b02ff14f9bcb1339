"""What crosses the pipe between a ProcessPool and its worker processes.

Messages are framed by an 8-byte length; an empty one tells a child to exit.
A call travels as a pickle of ``(fn, args, kwargs, context values)``, made
in the caller so that an unpicklable one fails there at once.  An answer is
a *head* -- one tag byte (a value, an exception with its type name, message
and traceback text, so it survives even when the exception itself cannot be
unpickled, or a result that could not be pickled), the sizes of its
out-of-band buffers, and a protocol-5 pickle -- then those buffers, raw.

Large results are the reason for the buffers.  A ``bytes`` result of 1 MiB
or more (also as an item of a small tuple, list or dict result), and every
large buffer pickle 5 takes out of band (``bytearray``, NumPy arrays,
:class:`pickle.PickleBuffer`), crosses as raw bytes that the parent reads
straight into the object it hands back: no copy of the payload
is made while holding the GIL, so the caller's hub keeps running while a
200 MB result arrives (see ``bench/bench_bigresult.py``).  The child's side of the
conversation is in :mod:`offload._process.child`, the parent's in
:mod:`offload._process.keeper`.
"""

import importlib
import io
import pickle
import struct
from functools import partial
from itertools import islice
from types import FunctionType

from .._core.checks import name_of
from .carry import carried

HEADER = struct.Struct("!Q")
COUNT = struct.Struct("!I")  # in a head: how many buffers follow
BUFFER = struct.Struct("!QB")  # in a head: one buffer's size, and 1 if read-only
STOP = HEADER.pack(0)
#: Buffers this large or larger travel out of band (bytes).
OUT_OF_BAND = 1 << 20
_LIFT_ITEMS = 64  # a container this small is looked into for large bytes
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


def dumps(obj, buffers=None):
    """Pickle *obj*, falling back to :class:`_WrapperAwarePickler` if plain pickle refuses.

    With a list *buffers*, large buffers go out of band: their memoryviews
    are appended to it, in the order the pickle refers to them.
    """
    callback = None if buffers is None else partial(_out_of_band, buffers)
    try:
        return pickle.dumps(obj, PROTOCOL, buffer_callback=callback)
    except Exception as first:
        if buffers is not None:
            buffers.clear()  # what the failed attempt took out of band
        buffer = io.BytesIO()
        try:
            _WrapperAwarePickler(buffer, PROTOCOL, buffer_callback=callback).dump(obj)
        except Exception:
            raise first from None
        return buffer.getvalue()


def _out_of_band(buffers, buffer):
    # A true return keeps a small buffer in the pickle itself.
    if buffer.raw().nbytes < OUT_OF_BAND:
        return True
    buffers.append(buffer.raw())
    return False


def _big_bytes(obj):
    return type(obj) is bytes and len(obj) >= OUT_OF_BAND


def _lift(obj):
    """*obj* with its large ``bytes`` as PickleBuffers: the object itself, or
    the items of a small tuple, list or dict (one level down, the common
    ``(status, payload)`` and ``{"data": payload}`` shapes).

    Plain pickle copies bytes into the stream; a PickleBuffer goes out of
    band and unpickles as the very bytes object the parent reads.
    """
    kind = type(obj)
    if kind is bytes:
        return pickle.PickleBuffer(obj) if len(obj) >= OUT_OF_BAND else obj
    if kind in (tuple, list) and len(obj) <= _LIFT_ITEMS and any(map(_big_bytes, obj)):
        return kind(pickle.PickleBuffer(item) if _big_bytes(item) else item for item in obj)
    if kind is dict and len(obj) <= _LIFT_ITEMS and any(map(_big_bytes, obj.values())):
        return {key: pickle.PickleBuffer(v) if _big_bytes(v) else v for key, v in obj.items()}
    return obj


def pack_answer(kind, obj):
    """The parts of an answer, to be written in order: the framed head, then
    the raw out-of-band buffers (memoryviews)."""
    buffers: list = []
    stream = dumps(_lift(obj), buffers)
    table = b"".join(BUFFER.pack(view.nbytes, view.readonly) for view in buffers)
    head_size = 1 + COUNT.size + len(table) + len(stream)
    parts = [HEADER.pack(head_size) + bytes((kind,)) + COUNT.pack(len(buffers)) + table, stream]
    return parts + buffers


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
    # Two parts, written one after the other: a large call is not copied to
    # put its header in front.
    return (HEADER.pack(len(body)), body)


def chunks(iterables, size):
    """Lists of up to *size* argument tuples, zipped from *iterables*."""
    items = zip(*iterables)  # noqa: B905 - stops at the shortest, as map() does
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield chunk


def buffer_table(head):
    """From the start of a head: (kind, [(size, read-only), ...], where the pickle starts)."""
    kind = head[0]
    (count,) = COUNT.unpack_from(head, 1)
    start = 1 + COUNT.size
    table = [BUFFER.unpack_from(head, start + i * BUFFER.size) for i in range(count)]
    return kind, table, start + count * BUFFER.size


def decode(head, buffers, name):
    """(value, error) from a child's answer: its head and its buffers."""
    kind, _, start = buffer_table(head)
    body = memoryview(head)[start:]
    try:
        if kind == VALUE:
            return pickle.loads(body, buffers=buffers), None
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
