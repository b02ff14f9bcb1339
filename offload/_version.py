"""The version of offload, apart from the package face so that any module may import it."""

__version__ = "0.1.0"
