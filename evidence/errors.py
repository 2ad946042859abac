"""What can go wrong in the evidence store, as exception types callers can tell apart."""

from __future__ import annotations


class StoreConflict(OSError):
    """Something else is already stored under that name: evidence is never replaced."""


class StoreUnavailable(OSError):
    """The store could not be reached or refused the request; the message says which."""


class LockedError(PermissionError):
    """The store itself refuses: an object lock or legal hold protects the object."""


class NotAStore(ValueError):
    """The location exists (or answers) but holds no evidence store: a wrong --store."""
