"""The loop a worker process of a ProcessPool runs: read a call, run it, answer.

:data:`IN_CHILD` is True in such a process, so that calls to any
ProcessPool made there run inline: a worker never starts processes of its
own.
"""

import os
import pickle
import signal
import traceback

from .._core.checks import name_of
from .carry import run_with
from .wire import HEADER, RAISED, UNSENDABLE, VALUE, dumps, pack_answer

IN_CHILD = False  # True in a worker process of any ProcessPool


def run_chunk(fn, chunk):
    """Run *fn* over a list of argument tuples in one child (``map(chunksize=...)``)."""
    return [fn(*args) for args in chunk]


def _read_exactly(fd, size):
    # Straight into one buffer: a large call is not copied again to join parts.
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        got = os.readv(fd, [view[done:]])
        if not got:
            raise EOFError
        done += got
    return buffer


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
    return pack_answer(RAISED, (pickled, kind, message, text))


def _answer(data):
    """Run the call in *data* and return the answer to send back (its parts)."""
    try:
        fn, args, kwargs, values = pickle.loads(data)
    except BaseException as exc:
        error = pickle.UnpicklingError(
            f"the worker process cannot load the call: {exc} (is the function importable there? "
            "functions defined in __main__ of `python -c` or of an interactive session are not)"
        )
        error.__cause__ = exc
        return _answer_raised(error)
    try:
        value = run_with(values, fn, args, kwargs)
    except BaseException as exc:
        return _answer_raised(exc)
    try:
        return pack_answer(VALUE, value)
    except Exception as exc:
        text = f"cannot send the result of {name_of(fn)} back from the worker process: {exc}"
        return pack_answer(UNSENDABLE, text)


def child_main(tasks, results, initializer, initargs):
    """The loop of a worker process: read a call, run it, write the answer."""
    global IN_CHILD
    IN_CHILD = True
    # Ctrl-C in a terminal signals the whole process group; the parent
    # decides what happens to the calls, so a child ignores it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rfd, wfd = tasks.fileno(), results.fileno()

    def send(parts):
        for part in parts:  # the head, then each buffer straight from the object
            _write_all(wfd, part)

    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            send(_answer_raised(exc))
            return
    send(pack_answer(VALUE, None))  # ready
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
