"""Every argument check of offload's API, in one place.

Each check raises ``TypeError`` for a wrong type and ``ValueError`` for a
value out of range, with a message of the form "X must be Y, not Z", and
returns the value normalised where a number has more than one spelling (a
timeout of ``inf`` means no timeout).  Numbers are checked here before they
reach a gevent loop: a NaN compares False with everything, passes every
``<`` test, and arms a libev timer that stalls every other timer of the hub.
"""

import math
import os
from numbers import Real
from typing import Any

__all__ = [
    "check_bool",
    "check_callable",
    "check_count",
    "check_initializer",
    "check_map",
    "check_number",
    "check_name",
    "check_seconds",
    "check_timeout",
    "env_count",
    "env_timeout",
    "name_of",
]

# Longer than any real wait (292 years): a timeout at or beyond it means "no
# timeout", and a lock's acquire() raises OverflowError above it.
_FOREVER = 2.0**33


def _type_name(value: object) -> str:
    return type(value).__name__


def check_count(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """*value* if it is an int in ``[minimum, maximum]``; bools are refused."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {_type_name(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, not {value}")
    return value


def _seconds(name: str, value: Any, what: str) -> float:
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be {what}, not {_type_name(value)}")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond float's range, either way
        seconds = math.inf if value > 0 else -math.inf  # type: ignore[operator]
    if math.isnan(seconds):
        raise ValueError(f"{name} must be {what}, not nan")
    return seconds


def check_timeout(timeout: Any, name: str = "timeout") -> float | None:
    """*timeout* as float seconds >= 0, or None for no timeout.

    ``None``, ``inf`` and anything longer than a lock can wait all mean "no
    timeout" and come back as None.
    """
    if timeout is None:
        return None
    seconds = _seconds(name, timeout, "a number of seconds or None")
    if seconds < 0:
        raise ValueError(f"{name} must be >= 0, not {timeout}")
    if seconds >= _FOREVER:
        return None
    return seconds


def check_seconds(name: str, value: Any, *, positive: bool) -> float:
    """*value* as finite float seconds, > 0 if *positive* else >= 0."""
    seconds = _seconds(name, value, "a finite number of seconds")
    if math.isinf(seconds):
        raise ValueError(f"{name} must be a finite number of seconds, not {value}")
    if seconds < 0 or (positive and seconds == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, not {value}")
    return seconds


def check_number(name: str, value: Any, minimum: float, maximum: float) -> float:
    """*value* as a float in ``[minimum, maximum]`` (NaN refused)."""
    number = _seconds(name, value, "a number")
    if not minimum <= number <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, not {value}")
    return number


def check_map(fn: Any, timeout: Any, chunksize: Any) -> float | None:
    """The arguments of an executor's ``map``; returns the timeout to use."""
    check_callable(fn)
    timeout = check_timeout(timeout)
    check_count("chunksize", chunksize, 1)
    return timeout


def check_callable(fn: Any, name: str = "fn") -> None:
    """Raise TypeError unless *fn* is callable."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable, not {_type_name(fn)}")


def check_initializer(initializer: Any, initargs: Any) -> tuple:
    """*initargs* as a tuple, once *initializer* and *initargs* make sense together.

    As the standard library's pools: *initializer* is None or a callable,
    *initargs* any iterable of arguments (a list too; a str or bytes is
    refused, as a certain mistake); without an initializer it must be empty.
    """
    if isinstance(initargs, (str, bytes)) or not hasattr(initargs, "__iter__"):
        raise TypeError(f"initargs must be a tuple of arguments, not {_type_name(initargs)}")
    args = tuple(initargs)
    if initializer is None:
        if args:
            raise ValueError("initargs must be empty without an initializer: pass initializer= too")
    else:
        check_callable(initializer, "initializer")
    return args


def check_name(name: str, value: Any) -> str | None:
    """*value* if it is None or a non-empty str."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {_type_name(value)}")
    if not value:
        raise ValueError(f"{name} must not be empty: pass None for a generated name")
    return value


def check_bool(name: str, value: Any) -> bool:
    """*value* if it is a bool (not merely truthy: ``adaptive=1`` is refused)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {_type_name(value)}")
    return value


def _from_env(variable: str, convert: Any, what: str) -> Any:
    """*convert* of the environment variable's value; None if it is unset or
    blank; ValueError naming the variable if *convert* refuses it."""
    value = os.environ.get(variable)
    if value is None or not value.strip():
        return None
    try:
        return convert(value)
    except ValueError:
        raise ValueError(f"{variable} must be {what}, not {value!r}") from None


def env_timeout(variable: str, default: float | None) -> float | None:
    """The timeout in the environment variable *variable* (seconds, as
    :func:`check_timeout`: ``inf`` means none), else *default*; ValueError
    naming the variable for anything else."""
    seconds = _from_env(variable, float, "a number of seconds")
    return default if seconds is None else check_timeout(seconds, variable)


def env_count(variable: str, default: int) -> int:
    """The positive int in the environment variable *variable*, else *default*.

    An unset or blank variable means the default; anything else that is not
    a positive integer raises ValueError naming the variable.
    """
    count = _from_env(variable, int, "an integer")
    if count is None:
        return default
    if count <= 0:
        raise ValueError(f"{variable} must be greater than 0, not {count}")
    return count


def name_of(fn: Any) -> str:
    """How error messages name a call's function."""
    return getattr(fn, "__qualname__", None) or repr(fn)
