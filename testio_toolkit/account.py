"""Which account a mirror holds, known without storing the token.

A mirror records, in its ``meta`` table:

- ``source``: the base URL (or ``sandbox``);
- ``account_salt``: random bytes (hex), made once per mirror;
- ``account_token``: ``scrypt(token, salt)`` (hex): the same token gives the same value, the
  value gives nothing back, and another mirror's salt gives another value;
- ``account_products``: the ids of the account's products at the last run (JSON).

The rule (``same_account``), applied before a run writes anything:

- another base URL: another account (refused);
- the same token fingerprint: the same account, whatever its products became;
- another token (or a mirror made before fingerprints): the same account only when the
  product ids overlap, by at least half of the smaller of the two sets. TestIO product ids
  are unique across the service, so a rotated token sees the same products, while another
  account shares none (or, by chance in a simulator, very few). A mirror that knows no
  products yet accepts any account.

Usage::

    salt = new_salt()
    token_hash = fingerprint(token, salt)
    same_account(token_hash, [12, 13], fingerprint(other, salt), [12, 13])   # True
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store


def new_salt() -> str:
    """A random salt for one mirror, as hex."""
    return secrets.token_hex(16)


def fingerprint(token: str, salt: str) -> str:
    """A salted, slow hash of the token (hex); the token cannot be recovered from it."""
    digest = hashlib.scrypt(
        token.strip().encode("utf-8"), salt=bytes.fromhex(salt), n=2**14, r=8, p=1, dklen=32
    )
    return digest.hex()


def same_account(
    known_token: str | None,
    known_products: Collection[int],
    token: str,
    products: Collection[int],
) -> bool:
    """Whether a token reading ``products`` is the account a mirror recorded (see above)."""
    if known_token is not None and secrets.compare_digest(known_token, token):
        return True
    if not known_products:
        return True
    shared = len(set(known_products) & set(products))
    return shared > 0 and 2 * shared >= min(len(set(known_products)), len(set(products)))


def record(store: Store, identity: dict[str, str]) -> None:
    """Write the account's identity (``source``, salt, fingerprint, products) into ``meta``."""
    with store.transaction():
        for key, value in identity.items():
            store.set_meta(key, value)
