"""Settings: from arguments, then environment variables, then a ``.env`` file, then defaults.

The names of the environment variables are part of the public interface::

    TESTIO_CUSTOMER_API_TOKEN     the API token (without it, the bundled sandbox is used)
    TESTIO_CUSTOMER_API_BASE_URL  default https://api.test.io/customer/v2 (path prefix kept)
    TESTIO_DB_PATH                default: testio.db in the per-user data folder
    TESTIO_PRODUCT_IDS            optional comma-separated default product filter
    TESTIO_KEEP_CHANGES           how long the change feed keeps rows ("365d", "52w";
                                  default: everything)

Usage::

    settings = Settings.load(db_path="~/work/acme.db")
    settings.token          # a Secret: prints as '***'
    settings.sandbox        # True when no token is configured

With no token the toolkit talks to its bundled sandbox and writes to ``sandbox.db`` in the
same data folder, so sandbox data can never land in the database of a real account.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from platformdirs import user_data_dir

from .errors import ConfigError

DEFAULT_BASE_URL = "https://api.test.io/customer/v2"
ENV_TOKEN = "TESTIO_CUSTOMER_API_TOKEN"
ENV_BASE_URL = "TESTIO_CUSTOMER_API_BASE_URL"
ENV_DB_PATH = "TESTIO_DB_PATH"
ENV_PRODUCT_IDS = "TESTIO_PRODUCT_IDS"
ENV_KEEP_CHANGES = "TESTIO_KEEP_CHANGES"
# What keeps every change (the default): no value, or one of these words.
KEEP_EVERYTHING = ("", "all", "forever")


# The token every sandbox accepts (testio_toolkit.sandbox.Sandbox): not a secret.
SANDBOX_TOKEN = "sandbox-token"


class Secret:
    """A string that never shows itself in a repr, str or f-string.

    >>> Secret("abc")
    Secret('***')
    >>> Secret("abc").reveal()
    'abc'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: only for the Authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def default_data_dir() -> Path:
    """The per-user folder that holds the default databases."""
    return Path(user_data_dir("testio-toolkit", appauthor=False))


def parse_product_ids(value: str | int | list[int] | tuple[int, ...] | None) -> tuple[int, ...]:
    """``"12, 34"`` or ``[12, 34]`` -> ``(12, 34)``; a clear error for anything else."""
    if value is None or value == "":
        return ()
    if isinstance(value, int):
        return (value,)
    items = value.split(",") if isinstance(value, str) else list(value)
    ids: list[int] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            ids.append(int(text))
        except ValueError:
            raise ConfigError(f"product id {text!r} is not a number") from None
    return tuple(ids)


def parse_keep(value: str | None, origin: str = "keep_changes") -> str | None:
    """How long the change feed keeps rows: ``"365d"``, ``"52w"``, ``"48h"`` (kept as
    written), or None for everything (no value, ``"all"``, ``"forever"``).

    A bad value is a ConfigError naming where it came from.
    """
    text = (value or "").strip().lower()
    if text in KEEP_EVERYTHING:
        return None
    if len(text) >= 2 and text[-1] in "dwh" and text[:-1].isdigit() and int(text[:-1]) > 0:
        return text
    raise ConfigError(
        f"keep_changes {value!r} (from {origin}) is not a duration: use e.g. 365d, 52w or "
        "48h, or 'all' to keep every change"
    )


@dataclass(frozen=True)
class Settings:
    """Where to read from and where to write to. Build it with ``Settings.load(...)``."""

    token: Secret | None
    base_url: str
    db_path: Path
    product_ids: tuple[int, ...] = ()
    sandbox_preset: str = "small"
    # How long the change feed keeps rows ("365d"); None keeps everything.
    keep_changes: str | None = None
    # True when db_path is our default: then its folder is ours to create.
    db_path_is_default: bool = False
    # The named account (accounts.py) these settings are for; None: the single-account setup.
    account: str | None = None
    # Where each of token, base_url and db_path came from, as messages name it:
    # "TESTIO_DB_PATH", "TESTIO_DB_PATH in /home/me/.env", "--db", "the default", ...
    origins: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def sandbox_data(self) -> bool:
        """True for the bundled sandbox and for a sandbox server reached by URL (its token)."""
        # A sandbox's tokens all start with its own ("sandbox-token-acme": its customers).
        return self.token is None or self.token.reveal().startswith(SANDBOX_TOKEN)

    @property
    def sandbox(self) -> bool:
        """True when no token is configured: the bundled sandbox serves the data."""
        return self.token is None

    @classmethod
    def load(
        cls,
        *,
        token: str | None = None,
        base_url: str | None = None,
        db_path: str | os.PathLike[str] | None = None,
        product_ids: str | list[int] | tuple[int, ...] | None = None,
        keep_changes: str | None = None,
        env: dict[str, str] | None = None,
        dotenv_path: str | os.PathLike[str] | None = ".env",
    ) -> Settings:
        """Arguments win over environment variables, which win over ``.env``, then defaults."""
        environ = dict(os.environ) if env is None else env
        dotenv: dict[str, str | None] = {}
        if dotenv_path is not None and Path(dotenv_path).is_file():
            dotenv = dotenv_values(dotenv_path)

        origins: dict[str, str] = {}

        def pick(argument: Any, name: str, field_name: str = "") -> Any:
            origin, value = f"the {field_name} argument", argument
            if argument in (None, ""):
                if environ.get(name):
                    origin, value = name, environ[name]
                elif dotenv.get(name):
                    origin, value = f"{name} in {Path(str(dotenv_path)).resolve()}", dotenv[name]
                else:
                    origin, value = "the default", None
            if field_name:
                origins[field_name] = origin
            return value

        raw_token = pick(token, ENV_TOKEN, "token")
        secret = Secret(str(raw_token).strip()) if raw_token else None
        url = str(pick(base_url, ENV_BASE_URL, "base_url") or DEFAULT_BASE_URL).strip()
        if not url.startswith(("http://", "https://")):
            # Not the URL itself: someone may have pasted a secret into it.
            raise ConfigError("the base URL must start with http:// or https://")
        path_value = pick(db_path, ENV_DB_PATH, "db_path")
        if path_value is None:
            # The sandbox's own token (a `testio-toolkit sandbox` server) is sandbox data too.
            if secret is None:
                name = "sandbox.db"
            elif secret.reveal().startswith(SANDBOX_TOKEN):
                name = "sandbox-server.db"
            else:
                name = "testio.db"
            path = default_data_dir() / name
        else:
            path = Path(path_value).expanduser()
        ids = parse_product_ids(pick(product_ids, ENV_PRODUCT_IDS))
        keep = parse_keep(
            pick(keep_changes, ENV_KEEP_CHANGES, "keep_changes"), origins["keep_changes"]
        )
        return cls(
            token=secret,
            base_url=url,
            db_path=path,
            product_ids=ids,
            keep_changes=keep,
            db_path_is_default=path_value is None,
            origins=origins,
        )

    def origin(self, name: str) -> str:
        """Where ``token``, ``base_url`` or ``db_path`` came from: ``"TESTIO_DB_PATH"``,
        ``"TESTIO_DB_PATH in /home/me/.env"``, ``"--db"``, ``"the default"`` ..."""
        return self.origins.get(name, "the default")

    def token_hint(self) -> str:
        """What to check when the service refuses the token (never the token itself)."""
        origin = self.origin("token")
        if self.account is not None:
            return (
                f"check the token of account {self.account!r} (from {origin}); "
                f"`testio-toolkit account add {self.account}` stores a new one"
            )
        if origin == ENV_TOKEN:
            return f"check {ENV_TOKEN}: it is set in the environment (which wins over a .env file)"
        if origin.startswith(ENV_TOKEN):
            return f"check {origin} (the .env file; the environment would win over it)"
        return f"check the {origin} (it wins over {ENV_TOKEN} and the .env file)"

    def base_url_hint(self) -> str:
        """What to check when nothing answers, or nothing is found, at the base URL."""
        origin = self.origin("base_url")
        where = f"{ENV_BASE_URL} is not set" if origin == "the default" else f"from {origin}"
        return f"check the base URL ({where}; expected e.g. {DEFAULT_BASE_URL})"

    def db_path_note(self) -> str:
        """Where the database path came from, for messages about it."""
        origin = self.origin("db_path")
        if origin == "the default":
            return "the default database path"
        return f"the database path comes from {origin}"

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed: ``settings.with_(db_path=Path("x.db"))``."""
        return replace(self, **changes)

    def __repr__(self) -> str:
        source = "sandbox" if self.sandbox else self.base_url
        named = f" account={self.account}" if self.account else ""
        return f"<Settings {source}{named} db={self.db_path}>"
