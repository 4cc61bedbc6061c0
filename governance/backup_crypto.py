"""Streaming AES-256-GCM for backups, WAL segments and archives (docs/operations.md).

One GCM message over a multi-gigabyte dump would hand pg_restore plaintext that is only
authenticated at the very end. Instead the stream is cut into segments (1 MiB by default), each
sealed on its own (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár, as `age` and
Tink use it):

    header   = MAGIC (8) | key id (8) | salt (16) | nonce prefix (7) | segment size (4, big-endian)
    segment  = length of the sealed segment (4, big-endian) | AES-256-GCM(data key, nonce, plain, aad=header)
    nonce    = nonce prefix (7) | segment counter (4, big-endian) | 1 on the last segment else 0 (1)
    data key = HKDF-SHA256(master key, salt, info="gov.backup.v1")

So every segment is checked before its bytes are released, segments cannot be reordered, dropped
or cut off (the last one says it is last; a stream that ends without it is refused), and a wrong
master key is named as such from the header's key id before any decryption is tried. The master key
(BACKUP_ENCRYPTION_KEY, 32 bytes in base64) is never written anywhere near a backup.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import struct
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"GOVENC1\n"
SEGMENT_SIZE = 1024 * 1024
TAG_SIZE = 16
_HEADER = struct.Struct(">8s8s16s7sI")
HEADER_SIZE = _HEADER.size
_LENGTH = struct.Struct(">I")
_COUNTER = struct.Struct(">IB")
INFO = b"gov.backup.v1"
# A sealed segment is never longer than this (guards a corrupt length field against a huge read).
MAX_SEGMENT = 64 * 1024 * 1024


class CryptoError(ValueError):
    """The key is unusable, or the stream is not ours, was altered, truncated or sealed under another
    key; the message says which."""


def load_key(value: str | bytes | None, *, name: str = "BACKUP_ENCRYPTION_KEY") -> bytes:
    """The 32-byte master key from its base64 form (as the setting holds it)."""
    if not value:
        raise CryptoError(f"{name} is not set: backups are encrypted and need a 32-byte key in base64 "
                          "(e.g. `python -c \"import os, base64; print(base64.b64encode(os.urandom(32)).decode())\"`)")
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CryptoError(f"{name} is not valid base64") from exc
    if len(key) != 32:
        raise CryptoError(f"{name} must decode to 32 bytes (AES-256), got {len(key)}")
    return key


def new_key() -> str:
    """A fresh master key in the form load_key reads."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def key_id(master: bytes) -> bytes:
    """8 bytes that name the master key without revealing it (in each header)."""
    return hashlib.sha256(b"gov.backup.key-id\x00" + master).digest()[:8]


def _data_key(master: bytes, salt: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=INFO)
    return AESGCM(hkdf.derive(master))


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter > 0xFFFFFFFF:
        raise CryptoError("stream too long for one header (2^32 segments)")
    return prefix + _COUNTER.pack(counter, 1 if last else 0)


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The same bytes in pieces of exactly `size` (the last one shorter, possibly empty)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    yield bytes(buffer)


def encrypt_stream(master: bytes, chunks: Iterable[bytes], *, segment_size: int = SEGMENT_SIZE) -> Iterator[bytes]:
    """Yield the encrypted form of the concatenated `chunks` (header first), segment by segment."""
    salt, prefix = os.urandom(16), os.urandom(7)
    header = _HEADER.pack(MAGIC, key_id(master), salt, prefix, segment_size)
    aead = _data_key(master, salt)
    yield header
    pieces = _rechunk(chunks, segment_size)
    counter = 0
    current = next(pieces)
    for following in pieces:
        # `current` is a full segment and more follows (possibly an empty last one).
        sealed = aead.encrypt(_nonce(prefix, counter, False), current, header)
        yield _LENGTH.pack(len(sealed)) + sealed
        counter += 1
        current = following
    sealed = aead.encrypt(_nonce(prefix, counter, True), current, header)
    yield _LENGTH.pack(len(sealed)) + sealed


class _Reader:
    """Exact reads over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def read_header(head: bytes) -> tuple[bytes, bytes, bytes, int]:
    """(key id, salt, nonce prefix, segment size) of a stream starting with `head`."""
    if len(head) < HEADER_SIZE or head[:8] != MAGIC:
        raise CryptoError("not an encrypted backup stream (bad magic bytes)")
    _magic, kid, salt, prefix, segment_size = _HEADER.unpack(head[:HEADER_SIZE])
    return kid, salt, prefix, segment_size


def decrypt_stream(master: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the plaintext of an encrypt_stream() output, each segment only once it is authenticated.

    Raises CryptoError for another key, altered bytes, a truncated stream or bytes after the end."""
    reader = _Reader(chunks)
    header = reader.read(HEADER_SIZE)
    kid, salt, prefix, segment_size = read_header(header)
    if kid != key_id(master):
        raise CryptoError("this stream was encrypted under another key (key id "
                          f"{kid.hex()}, the configured key is {key_id(master).hex()})")
    aead = _data_key(master, salt)
    counter = 0
    while True:
        length_bytes = reader.read(_LENGTH.size)
        if len(length_bytes) < _LENGTH.size:
            raise CryptoError(f"stream truncated after segment {counter} (its last segment is missing)")
        (length,) = _LENGTH.unpack(length_bytes)
        if length < TAG_SIZE or length > min(MAX_SEGMENT, segment_size + TAG_SIZE):
            raise CryptoError(f"segment {counter} has an impossible length ({length})")
        sealed = reader.read(length)
        if len(sealed) < length:
            raise CryptoError(f"stream truncated inside segment {counter}")
        try:
            plain = aead.decrypt(_nonce(prefix, counter, False), sealed, header)
            last = False
        except InvalidTag:
            try:
                plain = aead.decrypt(_nonce(prefix, counter, True), sealed, header)
                last = True
            except InvalidTag as exc:
                raise CryptoError(f"segment {counter} failed authentication (altered or corrupt)") from exc
        if plain:
            yield plain
        if last:
            if reader.read(1):
                raise CryptoError("bytes follow the last segment (altered stream)")
            return
        counter += 1


def encrypted_size(plain_size: int, segment_size: int = SEGMENT_SIZE) -> int:
    """The exact length encrypt_stream() produces for `plain_size` bytes."""
    segments = plain_size // segment_size + 1
    return HEADER_SIZE + plain_size + segments * (_LENGTH.size + TAG_SIZE)


class IteratorReader(io.RawIOBase):
    """A read-only file over an iterator of bytes (minio's put_object reads parts from it), counting
    and hashing what passes through."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""
        self.size = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self.sha256.update(self._buffer[:n])
        self.size += n
        self._buffer = self._buffer[n:]
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buffer] if self._buffer else []
            self._buffer = b""
            parts.extend(self._chunks)
            data = b"".join(parts)
            self.sha256.update(data)
            self.size += len(data)
            return data
        buffer = bytearray(size)
        n = self.readinto(buffer)
        return bytes(buffer[:n])
