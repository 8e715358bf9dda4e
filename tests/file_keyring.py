"""A real keyring backend for the tests: a JSON file in the folder ``TT_TEST_KEYRING`` names.

It stands in for the OS keyring (its folder is outside the config and data folders, as a
keychain is), registered through keyring's own configuration::

    PYTHON_KEYRING_BACKEND=tests.file_keyring.FileKeyring
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    """Passwords by (service, username) in ``$TT_TEST_KEYRING/keyring.json``."""

    priority = 1  # type: ignore[assignment]

    @property
    def _file(self) -> Path:
        return Path(os.environ["TT_TEST_KEYRING"]) / "keyring.json"

    def _entries(self) -> dict[str, str]:
        if not self._file.is_file():
            return {}
        return dict(json.loads(self._file.read_text()))

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        entries = self._entries()
        entries[f"{service}/{username}"] = password
        self._file.parent.mkdir(parents=True, exist_ok=True)
        self._file.write_text(json.dumps(entries))

    def delete_password(self, service: str, username: str) -> None:
        entries = self._entries()
        if entries.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError(username)
        self._file.write_text(json.dumps(entries))
