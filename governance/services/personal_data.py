"""Personal data in the audit log, sealed per person so that erasure can make it unreadable.

Audit entries are append-only and hash-chained (docs/audit.md): an entry cannot be edited after a
person asks to be forgotten without breaking the chain. So the personal fields are sealed when the
entry is written, under a key of that person (person_keys), and erasure destroys the key: the
ciphertext stays in the entry and under its hash, but nobody can read it any more (docs/erasure.md).

- ``seal(session, user_id, fields)`` -> token "sealed:v1:<base64url(nonce + ciphertext)>" of the
  JSON of `fields`, AES-256-GCM with a random 12-byte nonce and the user id as associated data
  (a token copied into another person's entry does not open under that person's key). The key is
  made on first use. None when the person has no key and cannot get one (the key was destroyed, or
  no such user): the caller then writes no personal value at all.
- ``seal_entry(session, entry_fields...)``: what audit.record calls (a user actor's name, IP and user
  agent; the e-mail and name of a user the entry is about).
- ``reveal(session, entries)`` -> one ``Shown`` per entry: the readable actor name, IP, user agent
  and details, "erased person" where the key was destroyed, "[unreadable]" for a damaged token.
  One statement for the keys of all the entries (none when nothing is sealed).

Keys are cached in ``session.info`` for the current transaction only (a rollback may have undone the
key's INSERT; another transaction may destroy it), so a request that writes several entries reads
the key once.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from governance.models.lifecycle import PersonKey

SEAL_PREFIX = "sealed:v1:"
# details["sealed"]: the actor's own fields (actor_name, ip, user_agent), under the actor's key.
SEALED_KEY = "sealed"
# Keys of an entry's details that name the person the entry is about (at the top, and inside
# before/after). Sealed under that person's key.
PERSONAL_KEYS = frozenset({"email", "name"})
ERASED = "erased person"
UNREADABLE = "[unreadable]"
PSEUDONYM_PREFIX = "user:"
NONCE_BYTES = 12
_CACHE = "governance.person_keys"


def pseudonym(user_id: uuid.UUID | str) -> str:
    """What the actor_name column holds for a user actor: not personal, yet tells entries apart."""
    return f"{PSEUDONYM_PREFIX}{uuid.UUID(str(user_id)).hex[:8]}"


def is_pseudonym(actor_id: uuid.UUID | None, actor_name: str | None) -> bool:
    return actor_id is not None and actor_name == pseudonym(actor_id)


def is_token(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEAL_PREFIX)


# --- keys -------------------------------------------------------------------------------------------


def _cache(session: Session) -> dict[uuid.UUID, bytes | None]:
    cache: dict[uuid.UUID, bytes | None] = session.info.setdefault(_CACHE, {})
    return cache


def _forget(session: Session, *_args: Any) -> None:
    session.info.pop(_CACHE, None)


# Any commit or rollback (a savepoint's too) ends what the cache may assume.
event.listen(Session, "after_commit", _forget)
event.listen(Session, "after_soft_rollback", _forget)


def forget_key(session: Session, user_id: uuid.UUID) -> None:
    """After destroying a key: this transaction must not seal under the old one."""
    _cache(session)[user_id] = None


def person_key(session: Session, user_id: uuid.UUID) -> bytes | None:
    """The person's key, made on first use; None when it was destroyed or the user does not exist."""
    cache = _cache(session)
    if user_id in cache:
        return cache[user_id]
    row = session.execute(select(PersonKey.key).where(PersonKey.user_id == user_id)).first()
    if row is None:
        # ON CONFLICT: a concurrent first use waits for the other transaction and then reads its key.
        made = session.execute(text(
            "INSERT INTO person_keys (user_id, key) SELECT :uid, :key "
            "WHERE EXISTS (SELECT 1 FROM users WHERE id = :uid) "
            "ON CONFLICT (user_id) DO NOTHING RETURNING key"), {"uid": user_id, "key": os.urandom(32)}).first()
        row = made or session.execute(select(PersonKey.key).where(PersonKey.user_id == user_id)).first()
    key = None if row is None or row[0] is None else bytes(row[0])
    cache[user_id] = key
    return key


def _aad(user_id: uuid.UUID) -> bytes:
    return str(user_id).encode()


def encrypt(key: bytes, user_id: uuid.UUID, fields: Mapping[str, Any]) -> str:
    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps(dict(fields), ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    sealed = AESGCM(key).encrypt(nonce, plain, _aad(user_id))
    return SEAL_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def decrypt(key: bytes, user_id: uuid.UUID, token: str) -> dict[str, Any]:
    """The sealed fields; ValueError when the token is damaged or not this person's."""
    if not is_token(token):
        raise ValueError("not a sealed token")
    raw = token[len(SEAL_PREFIX):]
    try:
        blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        plain = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(user_id))
        fields = json.loads(plain)
    except (binascii.Error, InvalidTag, ValueError) as exc:
        raise ValueError("the sealed token cannot be opened") from exc
    if not isinstance(fields, dict):
        raise ValueError("the sealed token does not hold fields")
    return fields


def seal(session: Session, user_id: uuid.UUID, fields: Mapping[str, Any]) -> str | None:
    """`fields` sealed under the person's key (made on first use); None when the person has no key
    any more (erased) or does not exist."""
    key = person_key(session, user_id)
    return None if key is None else encrypt(key, user_id, fields)


# --- what audit.record writes ------------------------------------------------------------------------


def as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None


def subject_of(object_type: str | None, object_id: Any, details: Mapping[str, Any] | None) -> uuid.UUID | None:
    """Whose key seals the personal values inside an entry's details: the user the entry is about
    (object_type "user"), or the person an erasure request names (details["subject_id"])."""
    if object_type == "user":
        return as_uuid(object_id)
    if details and "subject_id" in details:
        return as_uuid(details.get("subject_id"))
    return None


def _seal_values(session: Session, subject: uuid.UUID, value: dict[str, Any]) -> dict[str, Any]:
    out = dict(value)
    for key in PERSONAL_KEYS & out.keys():
        if out[key] is None or is_token(out[key]):
            continue
        out[key] = seal(session, subject, {"v": out[key]}) or ERASED
    return out


def seal_subject_fields(session: Session, subject: uuid.UUID, details: dict[str, Any]) -> dict[str, Any]:
    """details with the subject's e-mail and name (at the top and in before/after) sealed."""
    out = _seal_values(session, subject, details)
    for side in ("before", "after"):
        if isinstance(out.get(side), dict):
            out[side] = _seal_values(session, subject, out[side])
    return out


def has_personal_keys(details: Mapping[str, Any]) -> bool:
    if PERSONAL_KEYS & details.keys():
        return True
    return any(isinstance(details.get(side), Mapping) and PERSONAL_KEYS & details[side].keys()
               for side in ("before", "after"))


def sealed_actor(session: Session, actor_id: uuid.UUID, actor_name: str, ip: Any,
                 user_agent: str | None) -> str | None:
    return seal(session, actor_id, {"actor_name": actor_name, "ip": None if ip is None else str(ip),
                                    "user_agent": user_agent})


# --- reading --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """An entry as people read it. `details` is None when the caller did not load them."""

    actor_name: str
    ip: str | None
    user_agent: str | None
    details: dict[str, Any] | None
    sealed: bool = False  # the actor's fields were sealed (written after this change)
    erased: bool = False  # ... and their person's key is gone


def _needs(entry: Any, token: str | None, details: Mapping[str, Any] | None) -> set[uuid.UUID]:
    ids: set[uuid.UUID] = set()
    if token is not None and entry.actor_id is not None:
        ids.add(entry.actor_id)
    if details is not None:
        subject = subject_of(entry.object_type, entry.object_id, details)
        if subject is not None and _has_tokens({k: v for k, v in details.items() if k != SEALED_KEY}):
            ids.add(subject)
    return ids


def _has_tokens(value: Any) -> bool:
    if is_token(value):
        return True
    if isinstance(value, Mapping):
        return any(_has_tokens(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_tokens(v) for v in value)
    return False


class KeyRing:
    """The keys needed to read some entries, loaded in one statement per `load` (only the ids not
    seen yet). Destroyed keys and persons without a key are remembered as None."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.keys: dict[uuid.UUID, bytes | None] = {}

    def load(self, ids: Iterable[uuid.UUID]) -> None:
        missing = {i for i in ids if i not in self.keys}
        if not missing:
            return
        rows = self.session.execute(select(PersonKey.user_id, PersonKey.key).where(PersonKey.user_id.in_(missing)))
        found = {user_id: (None if key is None else bytes(key)) for user_id, key in rows}
        for user_id in missing:
            self.keys[user_id] = found.get(user_id)

    def open(self, user_id: uuid.UUID, token: str) -> dict[str, Any] | None:
        """The fields, None when the key is destroyed; ValueError for a damaged token."""
        key = self.keys.get(user_id)
        if key is None:
            return None
        return decrypt(key, user_id, token)


def _open_subject(ring: KeyRing, subject: uuid.UUID | None, value: Any) -> Any:
    if is_token(value):
        if subject is None:
            return UNREADABLE
        try:
            fields = ring.open(subject, value)
        except ValueError:
            return UNREADABLE
        return ERASED if fields is None else fields.get("v")
    if isinstance(value, Mapping):
        return {k: _open_subject(ring, subject, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_open_subject(ring, subject, v) for v in value]
    return value


def shown(ring: KeyRing, entry: Any, *, token: str | None = None,
          details: Mapping[str, Any] | None = None) -> Shown:
    """One entry read with keys already in `ring` (reveal() loads them)."""
    # vars(): a list row loads only some columns (the rest raise on access); an attribute it did
    # not load reads as None here.
    loaded = vars(entry)
    name, ip, agent = loaded.get("actor_name") or "", loaded.get("ip"), loaded.get("user_agent")
    ip = None if ip is None else str(ip)
    sealed = erased = False
    if token is not None and entry.actor_id is not None:
        sealed = True
        try:
            fields = ring.open(entry.actor_id, token)
        except ValueError:
            name, ip, agent = UNREADABLE, None, None
        else:
            if fields is None:
                erased = True
                name, ip, agent = ERASED, None, None
            else:
                name = str(fields.get("actor_name") or name)
                ip, agent = fields.get("ip"), fields.get("user_agent")
    readable = None
    if details is not None:
        subject = subject_of(entry.object_type, entry.object_id, details)
        readable = {k: _open_subject(ring, subject, v) for k, v in details.items() if k != SEALED_KEY}
    return Shown(name, ip, agent, readable, sealed, erased)


def _token(details: Mapping[str, Any] | None) -> str | None:
    value = details.get(SEALED_KEY) if details else None
    return value if is_token(value) else None


def reveal(session: Session, entries: Sequence[Any], *,
           tokens: Mapping[Any, str | None] | None = None, with_details: bool = True) -> list[Shown]:
    """Each entry as people read it, in order. `entries` are AuditLog rows (or rows with the same
    attributes). For a list whose details were not loaded, pass with_details=False and the actor
    tokens by entry id (`tokens`, details->>'sealed'). One statement for all the keys."""
    ring = KeyRing(session)
    plan: list[tuple[Any, str | None, Mapping[str, Any] | None]] = []
    needed: set[uuid.UUID] = set()
    for entry in entries:
        details = entry.details if with_details else None
        token = (tokens or {}).get(entry.id) if tokens is not None else _token(details)
        plan.append((entry, token, details))
        needed |= _needs(entry, token, details)
    ring.load(needed)
    return [shown(ring, entry, token=token, details=details) for entry, token, details in plan]


def needed_keys(entry: Any, details: Mapping[str, Any] | None) -> set[uuid.UUID]:
    """The person keys reading this entry takes (for callers that batch their own KeyRing loads)."""
    return _needs(entry, _token(details), details)
