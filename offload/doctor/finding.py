"""A Finding: one thing the doctor learned about the process, with advice."""

from dataclasses import dataclass

__all__ = ["Finding", "OK", "WARNING", "NOT_APPLICABLE"]

OK, WARNING, NOT_APPLICABLE = "ok", "warning", "n/a"


@dataclass
class Finding:
    """One thing the doctor found about the process: ``status`` is "ok", "warning" or "n/a"."""

    check: str
    status: str
    detail: str
    advice: str = ""
