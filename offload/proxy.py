"""A proxy that runs every method of the object it wraps in a pool.

The pattern of eventlet's ``tpool.Proxy``: calling a method (or the object
itself, or ``len``, ``[]``, iteration, ``with``) runs the real call in a
worker thread while only the calling greenlet waits; reading a plain
attribute happens inline, because it does not block.  Results can be wrapped
again -- by type (``autowrap``) or by the name of the method that returned
them (``autowrap_names``) -- and the children keep the parent's settings.

:class:`ProxyBase` holds the mechanism every proxy of offload shares -- how
a call reaches the pool, how results may be wrapped, and the protocols that
run in the pool or inline -- and :class:`Proxy` adds the autowrap settings.
The dbapi and Mongo proxies derive from :class:`ProxyBase` too.
"""

from collections.abc import Callable, Iterable
from typing import Any

from .defaults import PoolArg, check_pool, resolve_pool

__all__ = ["Proxy", "ProxyBase", "unwrap"]

# The proxies define __getattr__/__setattr__ for the wrapped object, so their
# own slots are read and written past them.
getattribute = object.__getattribute__
setattribute = object.__setattr__


def unwrap(obj: Any) -> Any:
    """Return the real object behind a proxy, or *obj* itself."""
    if isinstance(obj, ProxyBase):
        return getattribute(obj, "_offload_obj")
    return obj


def unwrap_args(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """*args* and *kwargs* with every proxy replaced by its real object."""
    if any(isinstance(a, ProxyBase) for a in args):
        args = tuple(unwrap(a) for a in args)
    if kwargs and any(isinstance(v, ProxyBase) for v in kwargs.values()):
        kwargs = {k: unwrap(v) for k, v in kwargs.items()}
    return args, kwargs


def _check_autowrap(autowrap, autowrap_names):
    if isinstance(autowrap, type):
        autowrap = (autowrap,)
    autowrap = tuple(autowrap)
    for t in autowrap:
        if not isinstance(t, type):
            raise TypeError(f"autowrap must hold types, not {type(t).__name__}")
    if isinstance(autowrap_names, str):
        raise TypeError("autowrap_names must be a collection of names, not a str")
    autowrap_names = frozenset(autowrap_names)
    for n in autowrap_names:
        if not isinstance(n, str):
            raise TypeError(f"autowrap_names must hold str, not {type(n).__name__}")
    return autowrap, autowrap_names


class ProxyBase:
    """What every offload proxy shares: calls go to a pool, reads stay inline.

    :meth:`_offload_call` runs a call in the pool (proxies among the
    arguments unwrapped first), :meth:`_offload_wrap` decides what a result
    comes back as (here: as it is, or the proxy itself for the wrapped
    object), and :meth:`_offload_method` is the callable a method read
    through the proxy becomes.  Subclasses change those three, not the
    protocols built on them.
    """

    __slots__ = ("_offload_obj", "_offload_pool", "__weakref__")

    def __init__(self, obj: Any, *, pool: PoolArg = None) -> None:
        check_pool(pool)
        setattribute(self, "_offload_obj", unwrap(obj))
        setattribute(self, "_offload_pool", pool)

    # -- the mechanisms ---------------------------------------------------

    def _offload_call(self, fn: Callable[..., Any], args: tuple = (), kwargs: dict | None = None) -> Any:
        args, kwargs = unwrap_args(args, kwargs or {})
        return resolve_pool(self._offload_pool)._call(fn, args, kwargs, None)

    def _offload_wrap(self, value: Any, name: str | None = None) -> Any:
        """What *value*, returned by a call (or read as attribute *name*), comes back as."""
        if value is not None and value is self._offload_obj:
            return self
        return value

    def _offload_child(self, value: Any) -> "ProxyBase":
        """A proxy of *value* made the way this one was."""
        return type(self)(value, pool=self._offload_pool)

    def _offload_method(self, attr: Callable[..., Any], name: str) -> Callable[..., Any]:
        """The callable that runs method *attr* (read as *name*) in the pool."""

        def method(*args, **kwargs):
            return self._offload_wrap(self._offload_call(attr, args, kwargs), name)

        method.__name__ = name
        method.__qualname__ = f"{type(self._offload_obj).__qualname__}.{name}"
        method.__doc__ = getattr(attr, "__doc__", None)
        return method

    # -- attributes -------------------------------------------------------

    def __getattr__(self, name):
        attr = getattr(self._offload_obj, name)
        if not callable(attr):
            return self._offload_wrap(attr, name)
        return self._offload_method(attr, name)

    def __setattr__(self, name, value):
        setattr(self._offload_obj, name, unwrap(value))

    def __delattr__(self, name):
        delattr(self._offload_obj, name)

    def __dir__(self):
        return dir(self._offload_obj)

    # -- protocols run in the pool ---------------------------------------

    def __call__(self, *args, **kwargs):
        return self._offload_wrap(self._offload_call(self._offload_obj, args, kwargs), "__call__")

    def __len__(self):
        return self._offload_call(len, (self._offload_obj,))

    def __contains__(self, item):
        return self._offload_call(type(self._offload_obj).__contains__, (self._offload_obj, item))

    def __getitem__(self, key):
        return self._offload_wrap(self._offload_call(getitem, (self._offload_obj, key)))

    def __setitem__(self, key, value):
        self._offload_call(_setitem, (self._offload_obj, key, value))

    def __delitem__(self, key):
        self._offload_call(_delitem, (self._offload_obj, key))

    def __iter__(self):
        iterator = self._offload_call(iter, (self._offload_obj,))
        if iterator is self._offload_obj:
            return self
        return self._offload_child(iterator)

    def __next__(self):
        return self._offload_wrap(self._offload_call(next, (self._offload_obj,)))

    def __enter__(self):
        return self._offload_wrap(self._offload_call(type(self._offload_obj).__enter__, (self._offload_obj,)))

    def __exit__(self, exc_type, exc, tb):
        return self._offload_call(type(self._offload_obj).__exit__, (self._offload_obj, exc_type, exc, tb))

    # -- inline -----------------------------------------------------------

    def __repr__(self):
        return repr(self._offload_obj)

    def __str__(self):
        return str(self._offload_obj)

    def __bool__(self):
        return bool(self._offload_obj)

    def __eq__(self, other):
        return self._offload_obj == unwrap(other)

    def __ne__(self, other):
        return self._offload_obj != unwrap(other)

    def __hash__(self):
        return hash(self._offload_obj)


class Proxy(ProxyBase):
    """Wrap *obj* so that calling its methods never blocks the hub.

    :param autowrap: types whose instances, when returned by a proxied call
        or read as an attribute, come back wrapped in a Proxy.
    :param autowrap_names: attribute names whose results (or values) come
        back wrapped whatever their type; ``"__call__"`` wraps what calling
        the proxy itself returns, as eventlet's ``tpool.Proxy`` does.
    :param pool: where the calls run: ``None`` for the default thread pool,
        a pool name, or a pool.

    Runs in the pool: method calls, ``proxy(...)``, ``len``, ``in``,
    ``proxy[key]`` (get, set, delete), ``iter``/``next`` and ``with``; the
    iterator that ``iter`` returns is proxied too, so each ``next`` is one
    trip to the pool.  Inline:
    attribute reads and writes, ``str``, ``repr``, ``==``, ``!=``, ``hash``
    and ``bool``.  Proxies passed as arguments are unwrapped first, and
    :func:`unwrap` returns the real object.
    """

    __slots__ = ("_offload_autowrap", "_offload_names")

    def __init__(
        self,
        obj: Any,
        *,
        autowrap: type | Iterable[type] = (),
        autowrap_names: Iterable[str] = (),
        pool: PoolArg = None,
    ) -> None:
        autowrap, autowrap_names = _check_autowrap(autowrap, autowrap_names)
        super().__init__(obj, pool=pool)
        setattribute(self, "_offload_autowrap", autowrap)
        setattribute(self, "_offload_names", autowrap_names)

    def _offload_wrap(self, value, name=None):
        """Wrap *value* if the settings say so; the same settings go along."""
        if value is None or isinstance(value, ProxyBase):
            return value
        if value is self._offload_obj:
            return self
        if name in self._offload_names or (
            self._offload_autowrap and isinstance(value, self._offload_autowrap)
        ):
            return self._offload_child(value)
        return value

    def _offload_child(self, value):
        """A proxy of *value* with this proxy's settings."""
        return type(self)(
            value,
            autowrap=self._offload_autowrap,
            autowrap_names=self._offload_names,
            pool=self._offload_pool,
        )


def getitem(obj, key):
    """``obj[key]``, as a function to hand to a pool."""
    return obj[key]


def _setitem(obj, key, value):
    obj[key] = value


def _delitem(obj, key):
    del obj[key]
