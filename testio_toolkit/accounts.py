"""Named accounts: a CSM's customers, each with its own token, settings and mirror.

Usage::

    from testio_toolkit import accounts
    accounts.add("acme", token="...")              # checks the token, stores it in the keyring
    accounts.load().names()                          # ['acme', ...]
    tt.Mirror(account="acme").sync()                 # or tt.use("acme"); CLI: --account acme

The settings live in ``accounts.toml`` in the per-user config folder (platformdirs:
``~/.config/testio-toolkit`` on Linux), read with the standard library's ``tomllib``::

    default = "acme"

    [accounts.acme]
    url = "https://api.test.io/customer/v2"
    db_path = "/home/me/.local/share/testio-toolkit/accounts/acme.db"
    products = [12, 34]        # optional default product filter
    keep_changes = "365d"      # optional change-feed retention

The token is never in that file. It lives in the OS keyring (the ``keyring`` library:
macOS Keychain, Windows Credential Locker, Secret Service), one entry per account under the
service name ``testio-toolkit``. ``TESTIO_TOKEN_<NAME>`` (``TESTIO_TOKEN_ACME``) overrides it,
as CI and hosted notebooks need. Where no keyring backend works (a headless server), adding
an account fails with the ways out; only ``insecure_storage=True`` (``--insecure-storage``)
writes the token to a file only its owner may read (mode 0600), beside ``accounts.toml``, and
warns. The selection rule (``choose``): an explicit name, else ``TESTIO_ACCOUNT``, else the
default account, but only when no token is configured the old way
(``TESTIO_CUSTOMER_API_TOKEN`` or ``.env``), which keeps working unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keyring
import keyring.errors
import tomli_w
from platformdirs import user_config_dir

from .config import Secret, Settings, default_data_dir, parse_keep, parse_product_ids
from .errors import ConfigError

ENV_ACCOUNT = "TESTIO_ACCOUNT"
KEYRING_SERVICE = "testio-toolkit"
FILE_NAME = "accounts.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def config_dir() -> Path:
    """The per-user folder of ``accounts.toml`` (``XDG_CONFIG_HOME`` is honoured)."""
    return Path(user_config_dir("testio-toolkit", appauthor=False))


def accounts_file() -> Path:
    """Where the accounts' settings are kept."""
    return config_dir() / FILE_NAME


def token_variable(name: str) -> str:
    """The environment variable that overrides an account's token: ``TESTIO_TOKEN_ACME``."""
    return "TESTIO_TOKEN_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def check_name(name: str) -> str:
    """An account name: letters, digits, ``-`` and ``_`` (it names a file and a variable)."""
    if not _NAME.match(name or ""):
        raise ConfigError(
            f"account name {name!r} is not usable: use letters, digits, '-' and '_' "
            "(up to 63, starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class Account:
    """One customer account's settings (never its token)."""

    name: str
    base_url: str
    db_path: Path
    product_ids: tuple[int, ...] = ()
    keep_changes: str | None = None
    # Set only by --insecure-storage: the 0600 file holding the token.
    token_file: Path | None = None

    def to_toml(self) -> dict[str, Any]:
        table: dict[str, Any] = {"url": self.base_url, "db_path": str(self.db_path)}
        if self.product_ids:
            table["products"] = list(self.product_ids)
        if self.keep_changes:
            table["keep_changes"] = self.keep_changes
        if self.token_file is not None:
            table["token_file"] = str(self.token_file)
        return table


@dataclass
class Registry:
    """What ``accounts.toml`` holds: the accounts by name and the default one."""

    accounts: dict[str, Account] = field(default_factory=dict)
    default: str | None = None
    path: Path = field(default_factory=accounts_file)

    def names(self) -> list[str]:
        """The account names, sorted."""
        return sorted(self.accounts)

    def get(self, name: str) -> Account:
        """The account called ``name``; a ConfigError naming the known ones otherwise."""
        try:
            return self.accounts[name]
        except KeyError:
            known = ", ".join(self.names()) or "none yet"
            raise ConfigError(
                f"no account named {name!r} in {self.path} (known: {known}); add it with "
                f"`testio-toolkit account add {name}`"
            ) from None

    def save(self) -> None:
        """Write the file (atomically: a new file renamed over the old one)."""
        document: dict[str, Any] = {}
        if self.default:
            document["default"] = self.default
        document["accounts"] = {name: self.accounts[name].to_toml() for name in self.names()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".toml.new")
        scratch.write_bytes(tomli_w.dumps(document).encode("utf-8"))
        os.replace(scratch, self.path)


def load(path: Path | None = None) -> Registry:
    """Read ``accounts.toml`` (an empty registry when there is none)."""
    path = path or accounts_file()
    if not path.is_file():
        return Registry(path=path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or remove it") from None
    registry = Registry(path=path, default=document.get("default"))
    for name, table in (document.get("accounts") or {}).items():
        try:
            registry.accounts[name] = Account(
                name=check_name(name),
                base_url=str(table["url"]),
                db_path=Path(str(table["db_path"])).expanduser(),
                product_ids=parse_product_ids(table.get("products")),
                keep_changes=parse_keep(table.get("keep_changes"), f"account {name} in {path}"),
                token_file=Path(table["token_file"]) if table.get("token_file") else None,
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"account {name!r} in {path} lacks or mangles {exc}") from None
    return registry


def default_db_path(name: str) -> Path:
    """Where an account's mirror goes unless told: ``<data folder>/accounts/<name>.db``."""
    return default_data_dir() / "accounts" / f"{name}.db"


# -- tokens -----------------------------------------------------------------------------------


def read_token(account: Account, env: Mapping[str, str] | None = None) -> tuple[Secret | None, str]:
    """The account's token and where it came from (``TESTIO_TOKEN_ACME``, ``the keyring``,
    ``the file ...``), or ``(None, "nowhere")``."""
    environ = os.environ if env is None else env
    variable = token_variable(account.name)
    if environ.get(variable):
        return Secret(environ[variable].strip()), variable
    if account.token_file is not None:
        if account.token_file.is_file():
            return Secret(account.token_file.read_text(encoding="utf-8").strip()), (
                f"the file {account.token_file} (--insecure-storage)"
            )
        return None, f"nowhere (its file {account.token_file} is gone)"
    try:
        value = keyring.get_password(KEYRING_SERVICE, account.name)
    except keyring.errors.KeyringError as exc:
        return None, f"nowhere (the keyring could not be read: {type(exc).__name__})"
    if value:
        return Secret(value), "the keyring"
    return None, "nowhere (no keyring entry)"


def _no_keyring_message(name: str, exc: Exception) -> str:
    return (
        f"no working keyring to keep the token of account {name!r} in "
        f"({type(exc).__name__}: {keyring.get_keyring().name}); nothing was saved. Ways out: "
        "unlock or install a keyring service (Secret Service: gnome-keyring or KWallet; macOS "
        "and Windows have one), or choose a keyring backend with PYTHON_KEYRING_BACKEND; or set "
        f"{token_variable(name)} in the environment where the toolkit runs (no file needed); "
        "or, knowingly, `--insecure-storage` (tt: insecure_storage=True) to keep the token in a "
        "file only you may read (mode 0600)"
    )


def _store_token(name: str, token: Secret, insecure_storage: bool) -> Path | None:
    """Keep the token: in the keyring, or (only when asked) in a 0600 file."""
    if insecure_storage:
        path = config_dir() / "tokens" / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.unlink(missing_ok=True)
        # Created with 0600 from the first byte: never readable by others, even briefly.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token.reveal())
        warnings.warn(
            f"the token of account {name!r} is stored in plain text in {path} (mode 0600), "
            "not in a keyring, because --insecure-storage was given",
            UserWarning,
            stacklevel=3,
        )
        return path
    try:
        keyring.set_password(KEYRING_SERVICE, name, token.reveal())
    except keyring.errors.KeyringError as exc:
        raise ConfigError(_no_keyring_message(name, exc)) from None
    return None


def _forget_token(account: Account) -> None:
    if account.token_file is not None:
        account.token_file.unlink(missing_ok=True)
    # No entry, or no keyring: nothing to forget.
    with contextlib.suppress(keyring.errors.KeyringError):
        keyring.delete_password(KEYRING_SERVICE, account.name)


# -- what the commands do ---------------------------------------------------------------------


def add(
    name: str,
    token: str | None = None,
    *,
    url: str | None = None,
    db_path: str | os.PathLike[str] | None = None,
    products: str | list[int] | tuple[int, ...] | None = None,
    keep_changes: str | None = None,
    insecure_storage: bool = False,
) -> Account:
    """Add (or update) an account: token to the keyring, settings to ``accounts.toml``.

    >>> accounts.add("acme", token="...", url="https://api.test.io/customer/v2")

    The first account becomes the default. The CLI (``account add``) checks the token with
    one request before it calls this. Without ``token``, the account's token comes from
    ``TESTIO_TOKEN_<NAME>`` (hosted notebooks, CI: their secret store sets it), and nothing
    is stored.
    """
    check_name(name)
    secret = Secret((token or "").strip())
    variable = token_variable(name)
    if not secret and not os.environ.get(variable):
        raise ConfigError(f"no token given for account {name!r}, and {variable} is not set")
    settings = Settings.load(token="x", base_url=url, env={}, dotenv_path=None)  # checks the URL
    registry = load()
    old = registry.accounts.get(name)
    path = Path(db_path).expanduser() if db_path else (old.db_path if old else None)
    account = Account(
        name=name,
        base_url=settings.base_url,
        db_path=path or default_db_path(name),
        product_ids=parse_product_ids(products),
        keep_changes=parse_keep(keep_changes, "keep_changes"),
    )
    if old is not None:
        _forget_token(old)
    if secret:
        account = replace(account, token_file=_store_token(name, secret, insecure_storage))
    registry.accounts[name] = account
    if not registry.default:
        registry.default = name
    registry.save()
    return account


def remove(name: str, *, delete_mirror: bool = False) -> Account:
    """Forget an account: its keyring entry and settings; its mirror stays unless asked.

    >>> accounts.remove("acme")                     # the mirror file is kept
    """
    registry = load()
    account = registry.get(name)
    _forget_token(account)
    del registry.accounts[name]
    if registry.default == name:
        registry.default = None
    registry.save()
    if delete_mirror:
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(f"{account.db_path}{suffix}").unlink(missing_ok=True)
    return account


def set_default(name: str) -> Account:
    """Make ``name`` the account used when none is named: ``accounts.set_default("acme")``."""
    registry = load()
    account = registry.get(name)
    registry.default = name
    registry.save()
    return account


def choose(
    name: str | None, env: Mapping[str, str] | None = None, *, token_given: bool = False
) -> Account | None:
    """The account a mirror is for: ``name``, else ``TESTIO_ACCOUNT``, else the default
    account unless a token is configured the old way (an argument, the environment or
    ``.env``); None: the old way."""
    environ = os.environ if env is None else env
    chosen = name or environ.get(ENV_ACCOUNT) or None
    if chosen is None:
        if token_given or not accounts_file().is_file():
            return None
        if Settings.load(env=dict(environ)).token is not None:
            return None
        chosen = load().default
        if chosen is None:
            return None
    return load().get(chosen)


def settings_for(
    account: Account,
    *,
    token: str | None = None,
    base_url: str | None = None,
    db_path: str | os.PathLike[str] | None = None,
    product_ids: tuple[int, ...] | None = None,
    keep_changes: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The Settings of a named account; arguments win over its settings. No token: an error
    naming where it was looked for (never the bundled sandbox in an account's mirror)."""
    secret, source = (Secret(token), "the token argument") if token else read_token(account, env)
    if secret is None:
        raise ConfigError(
            f"account {account.name!r} has no token: looked in {token_variable(account.name)} "
            f"and {source}; store one with `testio-toolkit account add {account.name}`"
        )
    where = f"account {account.name!r} in {accounts_file()}"
    settings = Settings.load(
        token=secret.reveal(),
        base_url=base_url or account.base_url,
        db_path=db_path or account.db_path,
        product_ids=product_ids or account.product_ids or None,
        keep_changes=keep_changes or account.keep_changes,
        env={},
        dotenv_path=None,
    )
    origins = {
        "token": source,
        "base_url": "the base_url argument" if base_url else where,
        "db_path": "the db_path argument" if db_path else where,
        "keep_changes": where,
    }
    return settings.with_(
        account=account.name,
        origins=origins,
        db_path_is_default=not db_path and account.db_path == default_db_path(account.name),
    )
