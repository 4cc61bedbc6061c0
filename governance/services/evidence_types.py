"""Which files evidence may be, and the checks that prove a file is what its name says.

An allow-list of extensions, each with the content type we store (never the client's claim) and a
check that runs on the bytes while they stream (governance.services.evidence_upload feeds it):

- binary types (pdf, images, office documents, zip): the first bytes are matched with `filetype`
  and must agree with the extension (OOXML/ODF may be detected as plain zip: accepted for them);
- text types (txt, md, csv, json): UTF-8 without NUL bytes, not recognised by `filetype` as a
  binary format; CSV is parsed incrementally (every row has the header's field count) and JSON
  with ijson (one valid document, nothing after it);
- zip-based types (zip, docx, xlsx, pptx, odt, ods): once stored, the central directory is read
  with bounded ranged reads (`inspect_zip`) and refused past the entry, size and ratio limits.

Every check raises EvidenceError("file", message) with a message a person can act on.
"""

from __future__ import annotations

import codecs
import csv
import re
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import filetype
import ijson  # type: ignore[import-untyped]

from governance.services.evidence import EvidenceError, extension

# filetype's matchers look at no more than this many leading bytes.
HEAD_BYTES = 8192

BINARY, TEXT, ZIP = "binary", "text", "zip"

# What filetype may call a zip container (an OOXML/ODF document is a zip; a .zip may hold one).
ZIP_DETECTIONS = frozenset({"zip", "docx", "xlsx", "pptx", "odt", "ods", "odp", "epub"})


@dataclass(frozen=True)
class FileType:
    extension: str
    content_type: str
    kind: str  # BINARY, TEXT or ZIP (a binary type whose stored object is inspected as a zip)
    label: str
    detected: frozenset[str] = frozenset()  # filetype extensions that agree with this one


def _t(ext: str, content_type: str, kind: str, label: str, *detected: str) -> FileType:
    return FileType(ext, content_type, kind, label, frozenset(detected))


_OOXML = "application/vnd.openxmlformats-officedocument."
ALLOWED: dict[str, FileType] = {t.extension: t for t in (
    _t("pdf", "application/pdf", BINARY, "a PDF document", "pdf"),
    _t("png", "image/png", BINARY, "a PNG image", "png", "apng"),
    _t("jpg", "image/jpeg", BINARY, "a JPEG image", "jpg"),
    _t("jpeg", "image/jpeg", BINARY, "a JPEG image", "jpg"),
    _t("gif", "image/gif", BINARY, "a GIF image", "gif"),
    _t("webp", "image/webp", BINARY, "a WebP image", "webp"),
    _t("txt", "text/plain", TEXT, "a text file"),
    _t("md", "text/markdown", TEXT, "a Markdown file"),
    _t("csv", "text/csv", TEXT, "a CSV file"),
    _t("json", "application/json", TEXT, "a JSON file"),
    _t("xlsx", _OOXML + "spreadsheetml.sheet", ZIP, "an Excel workbook", "xlsx", "zip"),
    _t("docx", _OOXML + "wordprocessingml.document", ZIP, "a Word document", "docx", "zip"),
    _t("pptx", _OOXML + "presentationml.presentation", ZIP, "a PowerPoint presentation", "pptx", "zip"),
    _t("odt", "application/vnd.oasis.opendocument.text", ZIP, "an OpenDocument text", "odt", "zip"),
    _t("ods", "application/vnd.oasis.opendocument.spreadsheet", ZIP, "an OpenDocument spreadsheet", "ods", "zip"),
    _t("zip", "application/zip", ZIP, "a zip archive", *ZIP_DETECTIONS),
)}

ALLOWED_LIST = ", ".join(sorted(ALLOWED))
# For the file input's accept attribute.
ACCEPT = ",".join(f".{ext}" for ext in sorted(ALLOWED))


def _refuse(message: str) -> EvidenceError:
    return EvidenceError("file", message)


def file_type(filename: str) -> FileType:
    """The allowed type for this (cleaned) file name, or EvidenceError naming what is allowed."""
    ext = extension(filename)
    found = ALLOWED.get(ext)
    if found is None:
        what = f"Files ending in .{ext}" if ext else "Files without an extension"
        raise _refuse(f"{what} are not accepted. Allowed: {ALLOWED_LIST}.")
    return found


def describe(kind: Any) -> str:
    """How filetype's guess reads in a message: 'a PNG image (image/png)'."""
    label = next((t.label for t in ALLOWED.values() if kind.extension in t.detected), None)
    return f"{label} ({kind.mime})" if label else f"a .{kind.extension} file ({kind.mime})"


# Control characters that do not occur in a text file's first bytes (tab, LF, FF, CR and ESC do).
_BINARY_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")


def _head_is_text(head: bytes) -> bool:
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return not _BINARY_CONTROL.search(text)


class ContentCheck:
    """Fed the file's bytes in order (feed), then told the file has ended (finish); raises
    EvidenceError as soon as the bytes cannot be the declared type."""

    def __init__(self, ftype: FileType) -> None:
        self.ftype = ftype
        self.size = 0
        self._head = bytearray()
        self._head_checked = False

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self._head_checked:
            self._feed(chunk)
            return
        self._head += chunk
        if len(self._head) >= HEAD_BYTES:
            self._release_head()

    def finish(self) -> None:
        if self.size == 0:
            raise _refuse("The file is empty.")
        if not self._head_checked:
            self._release_head()
        self._finish()

    def _release_head(self) -> None:
        head = bytes(self._head)
        self._head = bytearray()
        self._head_checked = True
        self._check_head(head[:HEAD_BYTES])
        self._feed(head)

    def _check_head(self, head: bytes) -> None:
        raise NotImplementedError

    def _feed(self, chunk: bytes) -> None:
        pass

    def _finish(self) -> None:
        pass


class MagicCheck(ContentCheck):
    """A binary type: its first bytes must be what filetype calls one of ftype.detected."""

    def _check_head(self, head: bytes) -> None:
        kind = filetype.guess(head)
        if kind is None:
            raise _refuse(f"The file's content is not {self.ftype.label}, as its .{self.ftype.extension} "
                          "name says (its first bytes match no known format).")
        if kind.extension not in self.ftype.detected:
            raise _refuse(f"The file is named .{self.ftype.extension} but its content is {describe(kind)}. "
                          "Rename it to its real type or upload the right file.")


class TextCheck(ContentCheck):
    """UTF-8 text (a leading byte-order mark is allowed), no NUL bytes, and nothing filetype
    recognises as a binary format (unless the first bytes are plain text anyway: two-byte
    signatures such as BM or MZ also begin ordinary sentences)."""

    def __init__(self, ftype: FileType) -> None:
        super().__init__(ftype)
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._offset = 0  # bytes decoded so far
        self._lines = 1  # the line the next byte is on

    def _check_head(self, head: bytes) -> None:
        kind = filetype.guess(head)
        if kind is not None and not _head_is_text(head):
            raise _refuse(f"The file is named .{self.ftype.extension} but its content is {describe(kind)}, "
                          "not text.")

    def _decode(self, chunk: bytes, final: bool = False) -> str:
        try:
            text = self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            line = self._lines + chunk.count(b"\n", 0, exc.start)
            raise _refuse(f"The file is not UTF-8 text: invalid bytes on line {line:,} "
                          f"(byte {self._offset + exc.start + 1:,}). Save it as UTF-8 and try again.") from None
        if "\x00" in text:
            line = self._lines + text.count("\n", 0, text.index("\x00"))
            raise _refuse(f"The file contains a NUL byte on line {line:,}: it is not a text file.")
        self._offset += len(chunk)
        self._lines += chunk.count(b"\n")
        return text

    def _feed(self, chunk: bytes) -> None:
        self._text(self._decode(chunk))

    def _finish(self) -> None:
        self._text(self._decode(b"", final=True))
        self._end()

    def _text(self, text: str) -> None:
        pass

    def _end(self) -> None:
        pass


# A CSV record (all its lines, when a quoted field spans several) is held until it is complete.
CSV_MAX_RECORD_CHARS = 1024 * 1024


class _Lines:
    """The csv reader's input: complete records pushed in, pulled out line by line. It can run dry
    and be refilled (the C reader keeps no end-of-input state between calls at a record end)."""

    def __init__(self) -> None:
        self.queue: deque[str] = deque()

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if not self.queue:
            raise StopIteration
        return self.queue.popleft()


class CsvCheck(TextCheck):
    """Parses the CSV as it streams: each row must have the header's number of fields (blank lines
    are skipped); quoting must be well formed; a file with no rows is refused."""

    def __init__(self, ftype: FileType) -> None:
        super().__init__(ftype)
        self._partial = ""  # text after the last newline
        self._record: list[str] = []  # lines of a record whose quoted field is still open
        self._record_chars = 0
        self._record_line = 0
        self._open_quote = False
        self._lines_in = _Lines()
        self._reader = csv.reader(self._lines_in, strict=True)
        self._line_no = 0  # lines handed to the reader
        self.header_fields: int | None = None
        self.rows = 0

    def _text(self, text: str) -> None:
        if not text:
            return
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line + "\n")
        self._drain()
        if len(self._partial) > CSV_MAX_RECORD_CHARS:
            raise _refuse(f"Line {self._line_no + len(self._record) + 1:,} of the CSV file is longer than "
                          f"{CSV_MAX_RECORD_CHARS:,} characters.")

    def _line(self, line: str) -> None:
        if not self._record:
            self._record_line = self._line_no + 1
        self._record.append(line)
        self._record_chars += len(line)
        # With doubled-quote escaping, a record ends on a line where its quotes are balanced.
        if line.count('"') % 2:
            self._open_quote = not self._open_quote
        if self._open_quote:
            if self._record_chars > CSV_MAX_RECORD_CHARS:
                raise _refuse(f"A quoted field that starts on line {self._record_line:,} of the CSV file is not "
                              f"closed within {CSV_MAX_RECORD_CHARS:,} characters.")
            return
        self._lines_in.queue.extend(self._record)
        self._line_no += len(self._record)
        self._record = []
        self._record_chars = 0

    def _drain(self) -> None:
        try:
            for row in self._reader:
                self._row(row)
        except csv.Error as exc:
            raise _refuse(f"The CSV file is not valid on line {self._reader.line_num:,}: {exc}.") from None

    def _row(self, row: list[str]) -> None:
        if not row:
            return  # a blank line
        if self.header_fields is None:
            self.header_fields = len(row)
        elif len(row) != self.header_fields:
            raise _refuse(f"Line {self._reader.line_num:,} of the CSV file has {len(row)} field"
                          f"{'s' if len(row) != 1 else ''}; the header has {self.header_fields}.")
        self.rows += 1

    def _end(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        if self._open_quote:
            raise _refuse(f"A quoted field that starts on line {self._record_line:,} of the CSV file is "
                          "never closed.")
        self._drain()
        if self.rows == 0:
            raise _refuse("The CSV file has no rows.")


def _yajl_offset(message_line: bytes, chunk: bytes) -> int | None:
    """Where in `chunk` yajl stopped, from its error snippet: yajl prints 40 - offset spaces and
    chunk[0:offset + 30] when offset < 30, else 10 spaces and chunk[offset - 30:offset + 30], with
    CR and LF shown as spaces."""
    flat = chunk.replace(b"\n", b" ").replace(b"\r", b" ")
    for offset in range(min(30, len(flat) + 1)):
        if message_line == b" " * (40 - offset) + flat[:offset + 30]:
            return offset
    snippet = message_line[10:]
    found = [m.start() for m in re.finditer(re.escape(snippet), flat)] if snippet else []
    return found[0] + 30 if len(found) == 1 else None


class JsonCheck(TextCheck):
    """One JSON document, parsed incrementally by ijson (never whole in memory), nothing after it."""

    def __init__(self, ftype: FileType) -> None:
        super().__init__(ftype)
        self._events: Any = ijson.sendable_list()
        self._parser = ijson.basic_parse_coro(self._events)
        self._started = False

    def _json_error(self, exc: Exception, chunk: bytes | None, chunk_offset: int, chunk_line: int) -> EvidenceError:
        raw = exc.args[0] if exc.args else str(exc)
        message = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace")
        lines = message.split(b"\n")
        reason = lines[0].decode("utf-8", "replace").split(": ", 1)[-1].strip().rstrip(".") or "invalid JSON"
        if chunk is None:  # the document ended too soon
            return _refuse("The file is not valid JSON: it ends before the JSON document does.")
        offset = _yajl_offset(lines[1], chunk) if len(lines) > 1 else None
        where = ""
        if offset is not None:
            line = chunk_line + chunk.count(b"\n", 0, max(offset - 1, 0))
            where = f" on line {line:,} (byte {chunk_offset + offset:,})"
        near = lines[1].strip().decode("utf-8", "replace")[-40:] if len(lines) > 1 else ""
        return _refuse(f"The file is not valid JSON: {reason}{where}" + (f', near "{near}".' if near else "."))

    def _feed(self, chunk: bytes) -> None:
        chunk_offset, chunk_line = self._offset, self._lines
        super()._feed(chunk)  # UTF-8 and NUL checks, line count
        if not self._started:
            self._started = True
            if chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8):]
                chunk_offset += len(codecs.BOM_UTF8)
        try:
            self._parser.send(chunk)
        except ijson.JSONError as exc:
            raise self._json_error(exc, chunk, chunk_offset, chunk_line) from None
        self._events.clear()

    def _end(self) -> None:
        try:
            self._parser.close()
        except ijson.JSONError as exc:
            raise self._json_error(exc, None, self._offset, self._lines) from None


def content_check(ftype: FileType) -> ContentCheck:
    if ftype.extension == "csv":
        return CsvCheck(ftype)
    if ftype.extension == "json":
        return JsonCheck(ftype)
    if ftype.kind == TEXT:
        return TextCheck(ftype)
    return MagicCheck(ftype)


# --- zip inspection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int
    max_uncompressed_bytes: int
    max_ratio: int


@dataclass(frozen=True)
class ZipSummary:
    entries: int
    uncompressed_bytes: int
    nested_archives: int


_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CDH = struct.Struct("<4s6H3L5H2L")
_LOCAL_HEADER_SIZE = 30
# The ratio limit applies to entries that expand to more than this; a small entry of repeated text
# (an XML part, say) compresses far better than any real document and is harmless.
RATIO_MIN_BYTES = 1024 * 1024
# The directory is read in windows of this size; one larger than ZIP_MAX_DIRECTORY_BYTES is refused.
ZIP_READ_WINDOW = 1024 * 1024
ZIP_MAX_DIRECTORY_BYTES = 64 * 1024 * 1024
_ARCHIVE_SUFFIXES = (".zip", ".jar", ".7z", ".rar", ".gz", ".tgz", ".bz2", ".xz", ".tar", ".docx", ".xlsx",
                     ".pptx", ".odt", ".ods", ".odp", ".epub")

ReadRange = Callable[[int, int], bytes]


def _unreadable(why: str) -> EvidenceError:
    return _refuse(f"The archive's directory cannot be read ({why}); it is damaged or not a zip file.")


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):,.0f} MiB" if n < 1024**3 else f"{n / 1024**3:,.1f} GiB"


class _Window:
    """Sequential reads of [start, end) through bounded ranged reads, without copying the window
    for every record taken from it."""

    def __init__(self, read: ReadRange, start: int, end: int) -> None:
        self._read, self._pos, self._end = read, start, end
        self._buf = b""
        self._i = 0

    def remaining(self) -> int:
        return len(self._buf) - self._i + (self._end - self._pos)

    def take(self, n: int) -> bytes:
        while len(self._buf) - self._i < n and self._pos < self._end:
            want = min(ZIP_READ_WINDOW, self._end - self._pos)
            data = self._read(self._pos, want)
            if len(data) != want:
                raise _unreadable("the store returned a short read")
            self._buf = self._buf[self._i:] + data
            self._i = 0
            self._pos += want
        if len(self._buf) - self._i < n:
            raise _unreadable("the directory ends inside an entry")
        out = self._buf[self._i:self._i + n]
        self._i += n
        return out


def _directory_entries(read: ReadRange, start: int, size: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(name, compressed, uncompressed, local header offset) for each central directory entry."""
    window = _Window(read, start, start + size)
    while window.remaining():
        fields = _CDH.unpack(window.take(_CDH.size))
        if fields[0] != b"PK\x01\x02":
            raise _unreadable("an entry has a bad signature")
        csize, usize = fields[8], fields[9]
        name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
        offset = fields[16]
        rest = window.take(name_len + extra_len + comment_len)
        name, extra = rest[:name_len], rest[name_len:name_len + extra_len]
        if 0xFFFFFFFF in (csize, usize, offset):
            usize, csize, offset = _zip64_extra(extra, usize, csize, offset)
        yield name, csize, usize, offset


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, i)
        if tag == 0x0001:
            data = extra[i + 4:i + 4 + length]
            values = [usize, csize, offset]
            j = 0
            for k in range(3):
                if values[k] == 0xFFFFFFFF:
                    if j + 8 > len(data):
                        raise _unreadable("a ZIP64 field is truncated")
                    values[k] = struct.unpack_from("<Q", data, j)[0]
                    j += 8
            return values[0], values[1], values[2]
        i += 4 + length
    raise _unreadable("a ZIP64 entry has no ZIP64 sizes")


def inspect_zip(read: ReadRange, size: int, limits: ZipLimits) -> ZipSummary:
    """Check a stored zip through bounded ranged reads (`read(offset, length)`): the end record,
    then the central directory in windows. Nothing is decompressed; nested archives are counted,
    not opened. Raises EvidenceError past a limit or when the directory is unreadable."""
    if size < _EOCD.size:
        raise _unreadable("the file is too short")
    tail_len = min(size, _EOCD.size + 0xFFFF + _EOCD64_LOCATOR.size)
    tail_start = size - tail_len
    tail = read(tail_start, tail_len)
    pos = len(tail)
    while True:
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
        if pos < 0:
            raise _unreadable("no end-of-directory record")
        if pos + _EOCD.size <= len(tail):
            eocd = _EOCD.unpack_from(tail, pos)
            if pos + _EOCD.size + eocd[7] <= len(tail):
                break
    _, disk, cd_disk, _, entries, cd_size, cd_offset, _ = eocd
    eocd_at = tail_start + pos
    if disk or cd_disk:
        raise _refuse("Split (multi-part) zip archives are not accepted.")
    locator_at = pos - _EOCD64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at:locator_at + 4] == b"PK\x06\x07":
        _, _, eocd64_offset, _ = _EOCD64_LOCATOR.unpack_from(tail, locator_at)
        if eocd64_offset + _EOCD64.size > size:
            raise _unreadable("the ZIP64 end record is out of range")
        record = read(eocd64_offset, _EOCD64.size)
        if len(record) < _EOCD64.size or record[:4] != b"PK\x06\x06":
            raise _unreadable("the ZIP64 end record has a bad signature")
        fields = _EOCD64.unpack(record)
        entries, cd_size, cd_offset = fields[7], fields[8], fields[9]
        eocd_at = eocd64_offset
    if entries > limits.max_entries:
        raise _refuse(f"The archive has {entries:,} entries; at most {limits.max_entries:,} are accepted.")
    if cd_size > ZIP_MAX_DIRECTORY_BYTES:
        raise _refuse(f"The archive's directory is {_mib(cd_size)}; at most {_mib(ZIP_MAX_DIRECTORY_BYTES)} "
                      "is accepted.")
    cd_start = eocd_at - cd_size
    # Bytes before the archive proper (a self-extracting stub) shift every offset by `prefix`.
    prefix = cd_start - cd_offset
    if cd_start < 0 or prefix < 0:
        raise _unreadable("the directory lies outside the file")

    count = total = nested = 0
    spans: list[tuple[int, int]] = []
    for name, csize, usize, offset in _directory_entries(read, cd_start, cd_size):
        count += 1
        if count > limits.max_entries:
            raise _refuse(f"The archive has more than {limits.max_entries:,} entries.")
        shown = name.decode("utf-8", "replace")[:120]
        start = prefix + offset
        if start + _LOCAL_HEADER_SIZE + csize > cd_start:
            raise _unreadable(f"the entry {shown!r} points past the data")
        total += usize
        if total > limits.max_uncompressed_bytes:
            raise _refuse(f"The archive would expand to more than {_mib(limits.max_uncompressed_bytes)} "
                          "(a zip bomb?); it is refused.")
        if usize > RATIO_MIN_BYTES and usize > max(csize, 1) * limits.max_ratio:
            ratio = usize // max(csize, 1)
            raise _refuse(f"The entry {shown!r} expands {ratio:,} times ({_mib(usize)} from "
                          f"{csize:,} bytes); at most {limits.max_ratio:,} times is accepted (a zip bomb?).")
        if name.lower().endswith(tuple(s.encode() for s in _ARCHIVE_SUFFIXES)):
            nested += 1
        spans.append((start, start + _LOCAL_HEADER_SIZE + len(name) + csize))
    if count != entries:
        raise _unreadable(f"the directory lists {count:,} entries, its end record {entries:,}")
    spans.sort()
    for (_, end), (next_start, _) in pairwise(spans):
        if end > next_start:
            raise _refuse("Entries of the archive overlap one another (a zip bomb technique); it is refused.")
    return ZipSummary(count, total, nested)
