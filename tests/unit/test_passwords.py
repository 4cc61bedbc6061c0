"""Password policy (8..256, never a common password) and Argon2id hashing."""

import pytest
from argon2 import PasswordHasher

from governance.models.identity import User
from governance.services import identity, passwords


@pytest.mark.parametrize("common", ["password1", "PASSWORD1", "Sunshine", "iloveyou", "12345678", "QwertyUiop"])
def test_common_passwords_are_refused_whatever_their_case(common) -> None:
    with pytest.raises(passwords.PasswordPolicyError) as refused:
        passwords.check_policy(common)
    assert refused.value.field == "password" and "too common" in refused.value.message


def test_the_bundled_list_is_zxcvbns_thirty_thousand() -> None:
    assert len(passwords.common_passwords()) >= 29000
    assert "trustno1" in passwords.common_passwords()


def test_at_least_eight_characters() -> None:
    with pytest.raises(passwords.PasswordPolicyError, match="at least 8"):
        passwords.check_policy("kq7#vB2")
    passwords.check_policy("kq7#vB2x")


def test_long_passphrases_are_welcome_up_to_256() -> None:
    passwords.check_policy("a sentence I will remember about otters and lighthouses " * 2)  # 112 chars
    passwords.check_policy("x7" * 128)
    with pytest.raises(passwords.PasswordPolicyError, match="at most 256"):
        passwords.check_policy("x7" * 128 + "y")


def test_hashes_are_argon2id_and_verify() -> None:
    hashed = passwords.hash_password("otters and lighthouses")
    assert hashed.startswith("$argon2id$")
    assert passwords.verify(hashed, "otters and lighthouses")
    assert not passwords.verify(hashed, "otters and lighthouse")
    assert not passwords.verify(None, "anything at all")
    assert not passwords.verify("not a hash", "anything at all")


def test_create_user_applies_the_policy_and_names_the_field(db_session) -> None:
    for bad, message in (("short", "at least 8"), ("Password1", "too common")):
        with pytest.raises(identity.IdentityError, match=message) as refused:
            identity.create_user(db_session, email="p@example.test", name="P", role_name="auditor", password=bad)
        assert refused.value.field == "password"
    user = identity.create_user(db_session, email="p@example.test", name="P", role_name="auditor",
                                password="p" * 70 + "!")
    assert user.password_hash.startswith("$argon2id$")


def test_an_old_weaker_hash_is_upgraded_at_sign_in(db_session) -> None:
    user = identity.create_user(db_session, email="old@example.test", name="Old", role_name="auditor",
                                password="otters and lighthouses")
    user.password_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("otters and lighthouses")
    db_session.flush()
    assert passwords.needs_rehash(user.password_hash)
    assert identity.authenticate(db_session, "old@example.test", "otters and lighthouses") is not None
    db_session.refresh(user)
    assert not passwords.needs_rehash(user.password_hash)
    assert isinstance(user, User)
