"""Password policy and hashing: Argon2id, 8 to 256 characters, never a well-known password.

The common-password list is zxcvbn's bundled frequency list (30,000 passwords seen in breaches),
compared case-insensitively, so "Password1" is refused as surely as "password1".
"""

from __future__ import annotations

import functools
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
# Long passphrases are welcome (64+); the cap only stops megabyte "passwords" costing CPU.
MAX_LENGTH = 256

_hasher = PasswordHasher()  # Argon2id with argon2-cffi's RFC 9106 low-memory defaults
# Verified against when there is no real hash (unknown e-mail), so a refusal takes the same time.
_DUMMY_HASH = _hasher.hash(uuid.uuid4().hex)


class PasswordPolicyError(ValueError):
    """The password breaks the policy; `field` names the form field the message belongs beside."""

    def __init__(self, message: str, field: str = "password") -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@functools.cache
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def is_common(password: str) -> bool:
    return password.lower() in common_passwords() or password.strip().lower() in common_passwords()


def check_policy(password: str, *, field: str = "password") -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"Use at least {MIN_LENGTH} characters.", field)
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"Use at most {MAX_LENGTH} characters.", field)
    if is_common(password):
        raise PasswordPolicyError("This password is too common: it is on lists attackers try first. "
                                  "Choose another (a few unrelated words work well).", field)


def hash_password(password: str, *, field: str = "password") -> str:
    """The Argon2id hash of a password that meets the policy (PasswordPolicyError otherwise)."""
    check_policy(password, field=field)
    return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    """True when the password matches; with no hash, spends the same time and says False."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def rehash(password: str) -> str:
    """A fresh hash with the current parameters, for a password already verified (no policy check:
    an old password that predates the policy must still let its owner in)."""
    return _hasher.hash(password)
