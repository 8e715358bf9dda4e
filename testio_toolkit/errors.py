"""Every error the toolkit raises, under one root.

Catch ``tt.ToolkitError`` to handle them all::

    try:
        tt.sync()
    except tt.ToolkitError as exc:
        print(f"{type(exc).__name__}: {exc}")

The tree, by what a caller can do about it::

    ToolkitError
    ├── ConfigError (ValueError)        fix the settings or arguments
    ├── ConfirmationRequired            pass confirm=True / --yes
    ├── RebuildFailed                   a nuke could not rebuild; the old mirror is untouched
    ├── Cancelled                       the run was interrupted (Ctrl-C)
    ├── ApiError                        the service said no, or failed
    │   ├── AuthenticationError         401: the token was refused
    │   ├── PermissionDenied            403: the token may not read this object
    │   ├── NotFound (LookupError)      404: no such product or test
    │   ├── RateLimited                 429 that did not clear in time
    │   └── ServiceError                5xx, timeouts, dropped connections, garbage bodies
    │       └── PagingIgnored           the host answers every page with page 1
    ├── ExportError                     the team's copy could not be written (tt.export)
    └── StoreError                      the local database cannot be used
        ├── SyncInProgress              another process holds the writer lock
        ├── StoreCorrupt                not a SQLite file, or a damaged one
        ├── SchemaTooNew                written by a newer version of the toolkit
        └── NoBackup                    restore() found nothing to restore

Messages name the endpoint, product or file that failed. They never contain the API token:
the client builds them from the request path, not from headers.
"""

from __future__ import annotations


class ToolkitError(Exception):
    """Root of every error raised by testio-toolkit."""


class ConfigError(ToolkitError, ValueError):
    """A setting or argument is missing or malformed."""


class ConfirmationRequired(ToolkitError):
    """A destructive operation was asked for without explicit confirmation.

    ``plan`` is what it would have done (for ``nuke()``: the ``NukePlan``); nothing changed.

    >>> try:
    ...     tt.nuke()
    ... except tt.ConfirmationRequired as exc:
    ...     exc.plan                    # the same as tt.nuke_plan()
    """

    def __init__(self, message: str, *, plan: object = None) -> None:
        super().__init__(message)
        self.plan = plan


class RebuildFailed(ToolkitError):
    """A nuke could not rebuild the mirror; the database was left exactly as it was.

    ``result`` is the SyncResult of the failed rebuild, with the reasons per product.
    """

    def __init__(self, message: str, *, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class Cancelled(ToolkitError):
    """The run was interrupted before it finished; what it committed is consistent."""


class ApiError(ToolkitError):
    """The TestIO service refused a request or failed to answer it.

    ``endpoint`` is the relative path that failed (``products/12/exploratory_tests``) and
    ``status_code`` the HTTP status, or ``None`` when no response arrived.
    """

    def __init__(
        self, message: str, *, endpoint: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status_code = status_code


class AuthenticationError(ApiError):
    """The service refused the API token (HTTP 401)."""


class PermissionDenied(ApiError):
    """The token has no access to this object (HTTP 403)."""


class NotFound(ApiError, LookupError):
    """The product or test does not exist (HTTP 404)."""


class RateLimited(ApiError):
    """The service kept answering 429 after every allowed wait."""


class ServiceError(ApiError):
    """The service failed: 5xx, timeout, dropped connection, or a body that is not JSON."""


class PagingIgnored(ServiceError):
    """The host answered a later page of a product's test list with the tests of page 1
    (some staging hosts ignore ``page``): the list cannot be read whole there."""


class ExportError(ToolkitError):
    """An export (``tt.export``) failed: the extra is missing, the destination is out of
    reach, full, busy, or holds another account. The mirror is untouched."""


class StoreError(ToolkitError):
    """The local database cannot be opened, read or written.

    ``path`` is the database file concerned.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class SyncInProgress(StoreError):
    """Another sync, refresh or nuke holds the writer lock of this database."""


class StoreCorrupt(StoreError):
    """The file is not a SQLite database, or SQLite reports it damaged."""


class SchemaTooNew(StoreError):
    """The database was written by a newer toolkit; upgrade before using it."""


class NoBackup(StoreError):
    """restore() found no backup beside the database."""


def first_error(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups; ``exc`` itself otherwise.

    Concurrent work runs in ``asyncio.TaskGroup``s; callers catch our errors, not groups.
    """
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


__all__ = [
    "ApiError",
    "AuthenticationError",
    "Cancelled",
    "ConfigError",
    "ConfirmationRequired",
    "NoBackup",
    "NotFound",
    "PagingIgnored",
    "PermissionDenied",
    "RateLimited",
    "RebuildFailed",
    "SchemaTooNew",
    "ServiceError",
    "StoreCorrupt",
    "StoreError",
    "SyncInProgress",
    "ToolkitError",
]
