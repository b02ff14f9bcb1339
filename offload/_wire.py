"""What crosses the pipe between a ProcessPool and its worker processes.

Messages are framed by an 8-byte length; an empty one tells a child to exit.
A call travels as a pickle of ``(fn, args, kwargs)``, made in the caller so
that an unpicklable one fails there at once.  An answer is one tag byte --
a value, an exception (with its type name, message and traceback text, so it
survives even when the exception itself cannot be unpickled), or a result
that could not be pickled -- followed by a pickle.  :func:`child_main` is the
loop a worker process runs.
"""

import importlib
import io
import os
import pickle
import signal
import struct
import traceback
from itertools import islice
from types import FunctionType

from ._poolbase import name_of

HEADER = struct.Struct("!Q")
STOP = HEADER.pack(0)
_VALUE, _RAISED, _UNSENDABLE = 0, 1, 2  # the first byte of every answer
_PROTOCOL = pickle.HIGHEST_PROTOCOL

in_worker = False  # True in a worker process of any ProcessPool


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
        return pickle.dumps(obj, _PROTOCOL)
    except Exception as first:
        buffer = io.BytesIO()
        try:
            _WrapperAwarePickler(buffer, _PROTOCOL).dump(obj)
        except Exception:
            raise first from None
        return buffer.getvalue()


def pack_call(fn, args, kwargs):
    """The message that asks a child to run ``fn(*args, **kwargs)``."""
    try:
        body = dumps((fn, args, kwargs))
    except Exception as exc:
        raise pickle.PicklingError(
            f"cannot send {name_of(fn)} and its arguments to a worker process: {exc} "
            "(functions must be importable by name, arguments and results picklable)"
        ) from exc
    return HEADER.pack(len(body)) + body


def run_chunk(fn, chunk):
    """Run *fn* over a list of argument tuples in one child (``map(chunksize=...)``)."""
    return [fn(*args) for args in chunk]


def chunks(iterables, size):
    """Lists of up to *size* argument tuples, zipped from *iterables*."""
    items = zip(*iterables)  # noqa: B905 - stops at the shortest, as map() does
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield chunk


def _read_exactly(fd, size):
    parts = []
    while size:
        part = os.read(fd, min(size, 1 << 20))
        if not part:
            raise EOFError
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _answer_raised(exc):
    """The answer that carries *exc*, its type and its traceback text."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        pickled = dumps(exc)
    except Exception:
        pickled = None
    try:
        message = str(exc)
    except Exception:
        message = repr(exc)
    body = pickle.dumps((pickled, kind, message, text), _PROTOCOL)
    return bytes((_RAISED,)) + body


def _answer(data):
    """Run the call in *data* and return the answer to send back."""
    try:
        fn, args, kwargs = pickle.loads(data)
    except BaseException as exc:
        error = pickle.UnpicklingError(
            f"the worker process cannot load the call: {exc} (is the function importable there? "
            "functions defined in __main__ of `python -c` or of an interactive session are not)"
        )
        error.__cause__ = exc
        return _answer_raised(error)
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        return _answer_raised(exc)
    try:
        return bytes((_VALUE,)) + dumps(value)
    except Exception as exc:
        text = f"cannot send the result of {name_of(fn)} back from the worker process: {exc}"
        return bytes((_UNSENDABLE,)) + pickle.dumps(text, _PROTOCOL)


def child_main(tasks, results, initializer, initargs):
    """The loop of a worker process: read a call, run it, write the answer."""
    global in_worker
    in_worker = True
    # Ctrl-C in a terminal signals the whole process group; the parent
    # decides what happens to the calls, so a child ignores it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rfd, wfd = tasks.fileno(), results.fileno()

    def send(answer):
        _write_all(wfd, HEADER.pack(len(answer)) + answer)

    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            send(_answer_raised(exc))
            return
    send(bytes((_VALUE,)) + pickle.dumps(None))  # ready
    while True:
        try:
            (size,) = HEADER.unpack(_read_exactly(rfd, HEADER.size))
            if not size:
                return
            data = _read_exactly(rfd, size)
        except EOFError:  # the parent is gone
            return
        answer = _answer(data)
        data = None
        try:
            send(answer)
        except BrokenPipeError:
            return


def decode(answer, name):
    """(value, error) from a child's answer."""
    kind = answer[0]
    body = memoryview(answer)[1:]
    try:
        if kind == _VALUE:
            return pickle.loads(body), None
        if kind == _UNSENDABLE:
            return None, pickle.PicklingError(pickle.loads(body))
        pickled, type_name, message, text = pickle.loads(body)
    except Exception as exc:
        error = pickle.UnpicklingError(f"cannot load what the worker process sent back for {name}: {exc}")
        error.__cause__ = exc
        return None, error
    error = None
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
