"""Deprecated: the pool defaults moved to :mod:`offload.defaults`, and
:func:`~offload.wrap_executor` to :mod:`offload.wrap`.

``import offload.executor`` warns once and re-exports the old names.
"""

import warnings

from .defaults import PoolArg, call, check_pool, get_default_pool, resolve_pool, submit
from .wrap import wrap_executor

__all__ = ["PoolArg", "call", "check_pool", "get_default_pool", "resolve_pool", "submit", "wrap_executor"]

warnings.warn(
    "offload.executor is deprecated since offload 0.2.0; use offload.defaults "
    "(and offload.wrap for wrap_executor) instead",
    DeprecationWarning,
    stacklevel=2,
)
