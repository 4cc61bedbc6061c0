"""The evidence type checks: the allow-list, magic bytes per binary type, UTF-8 text, incremental
CSV and JSON parsing, and the bounded zip inspection (entries, total size, ratio, overlap, damage)."""

from __future__ import annotations

import io
import os
import struct
import zipfile

import pytest

from governance.services.evidence import EvidenceError
from governance.services.evidence_types import (
    ALLOWED,
    HEAD_BYTES,
    RATIO_MIN_BYTES,
    ZipLimits,
    content_check,
    file_type,
    inspect_zip,
)

MIB = 1024 * 1024
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00" + b"\x00" * 32
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200
GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\x00" * 40


def _zip(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


DOCX = _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})
XLSX = _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})
PPTX = _zip({"[Content_Types].xml": b"<Types/>", "ppt/presentation.xml": b"<p/>"})
ODT = _zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"}, zipfile.ZIP_STORED)
ODS = _zip({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"},
           zipfile.ZIP_STORED)
PLAIN_ZIP = _zip({"readme.txt": b"evidence bundle"})


def _check(filename: str, data: bytes, chunk: int = 4096) -> None:
    check = content_check(file_type(filename))
    for i in range(0, len(data), chunk):
        check.feed(data[i:i + chunk])
    check.finish()


def _refused(filename: str, data: bytes, chunk: int = 4096) -> str:
    with pytest.raises(EvidenceError) as caught:
        _check(filename, data, chunk)
    assert caught.value.field == "file" and caught.value.status == 422
    return caught.value.message


# --- the allow-list ---------------------------------------------------------------------------------


def test_the_allow_list_names_a_content_type_for_each_extension() -> None:
    assert set(ALLOWED) == {"pdf", "png", "jpg", "jpeg", "gif", "webp", "txt", "md", "csv", "json", "xlsx",
                            "docx", "pptx", "odt", "ods", "zip"}
    assert file_type("Report.PDF").content_type == "application/pdf"
    assert file_type("photo.jpeg").content_type == file_type("photo.jpg").content_type == "image/jpeg"
    assert file_type("data.csv").content_type == "text/csv"


@pytest.mark.parametrize("filename", ["setup.exe", "script.sh", "page.html", "image.svg", "README", "archive.tar.gz"])
def test_other_extensions_are_refused(filename: str) -> None:
    with pytest.raises(EvidenceError, match=r"are not accepted\. Allowed: csv, docx"):
        file_type(filename)


# --- binary types: magic bytes ------------------------------------------------------------------------


@pytest.mark.parametrize(("filename", "data"), [
    ("a.pdf", PDF), ("a.png", PNG), ("a.jpg", JPEG), ("a.jpeg", JPEG), ("a.gif", GIF), ("a.webp", WEBP),
    ("a.docx", DOCX), ("a.xlsx", XLSX), ("a.pptx", PPTX), ("a.odt", ODT), ("a.ods", ODS), ("a.zip", PLAIN_ZIP),
    ("a.zip", DOCX),  # a .zip may hold a document: it is a zip all the same
    ("a.xlsx", PLAIN_ZIP),  # OOXML detected as plain zip is accepted
])
def test_a_binary_file_whose_bytes_agree_with_its_name_passes(filename: str, data: bytes) -> None:
    _check(filename, data + os.urandom(3 * HEAD_BYTES), chunk=1000)


@pytest.mark.parametrize(("filename", "data", "message"), [
    ("a.pdf", PNG, "content is a PNG image"),
    ("a.pdf", EXE, "content is a .exe file"),
    ("a.png", JPEG, "content is a JPEG image"),
    ("a.jpg", PDF, "content is a PDF document"),
    ("a.gif", WEBP, "content is a WebP image"),
    ("a.webp", GIF, "content is a GIF image"),
    ("a.docx", XLSX, "content is an Excel workbook"),
    ("a.xlsx", PDF, "content is a PDF document"),
    ("a.pptx", GZIP, "content is a .gz file"),
    ("a.odt", PNG, "content is a PNG image"),
    ("a.ods", EXE, "content is a .exe file"),
    ("a.zip", PDF, "content is a PDF document"),
    ("a.pdf", b"just some text pretending\n", "first bytes match no known format"),
])
def test_a_binary_file_in_disguise_is_refused(filename: str, data: bytes, message: str) -> None:
    assert message in _refused(filename, data)


def test_an_empty_file_is_refused() -> None:
    for filename in ("a.pdf", "a.txt", "a.csv", "a.json", "a.zip"):
        assert _refused(filename, b"") == "The file is empty."


# --- text types -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["a.txt", "a.md"])
def test_utf8_text_passes_with_or_without_a_bom(filename: str) -> None:
    _check(filename, "Évaluation du modèle — résultats ✓\n".encode() * 2000, chunk=777)  # splits characters
    _check(filename, b"\xef\xbb\xbf# Notes\n")
    _check(filename, b"BMW fleet report\n")  # a two-byte "BM" signature, but plainly text
    _check(filename, b"MZ Holdings annual report\n")


@pytest.mark.parametrize(("filename", "data", "message"), [
    ("a.txt", "caf\xe9\n".encode("latin-1"), "not UTF-8 text: invalid bytes on line 1 (byte 4)"),
    ("a.md", b"line one\nline two\n\xff\xfe\n", "invalid bytes on line 3"),
    ("a.txt", b"text\x00with a NUL\n", "NUL byte on line 1"),
    ("a.txt", PNG, "content is a PNG image"),
    ("a.md", PDF[:9] + b"\x00\x01\x02" * 10, "content is a PDF document"),
    ("a.txt", b"caf\xc3", "not UTF-8 text"),  # a truncated sequence at the end
])
def test_text_that_is_not_utf8_text_is_refused(filename: str, data: bytes, message: str) -> None:
    assert message in _refused(filename, data)


def test_a_good_csv_passes_with_quoted_newlines_across_chunks() -> None:
    rows = [b'system,owner,"notes, free text"\n']
    rows += [b'model-%d,team %d,"line one\nline ""two"""\n' % (i, i) for i in range(3000)]
    data = b"".join(rows) + b"last,row,no newline"
    for chunk in (1, 7, 4096, 65536):
        _check("a.csv", data, chunk)
    _check("a.csv", b"only,a,header\n")
    _check("a.csv", b"a,b\r\n1,2\r\n\r\n")  # CRLF and a blank line


@pytest.mark.parametrize(("data", "message"), [
    (b"a,b,c\n1,2,3\n4,5\n", "Line 3 of the CSV file has 2 fields; the header has 3."),
    (b"a,b\n1,2\n3,4,5,6\n", "Line 3 of the CSV file has 4 fields"),
    (b'a,b\n"1\n2",3\n4,"5\n', "quoted field that starts on line 4 of the CSV file is never closed"),
    (b'a,b\n"x"y,2\n', "not valid on line 2"),
    (b"\n\n\n", "The CSV file has no rows."),
    (b"a,b\n1,\xff\n", "not UTF-8 text: invalid bytes on line 2"),
])
def test_a_bad_csv_is_refused_naming_the_line(data: bytes, message: str) -> None:
    assert message in _refused("a.csv", data)
    assert message in _refused("a.csv", data, chunk=3)


def test_a_csv_line_number_counts_from_the_start_of_a_long_file() -> None:
    data = b"a,b\n" + b"1,2\n" * 50_000 + b"oops\n"
    assert "Line 50,002 of the CSV file has 1 field;" in _refused("a.csv", data, chunk=65536)


def test_a_run_away_quote_is_refused_without_holding_the_rest() -> None:
    data = b'a,b\n"never closed,1\n' + b"x,y\n" * 400_000
    assert "not closed within 1,048,576 characters" in _refused("a.csv", data, chunk=65536)


def test_good_json_passes() -> None:
    document = b'{"model": "scorer", "metrics": [' + b",".join(b'{"f1": 0.%d}' % i for i in range(5000)) + b"]}"
    for chunk in (1, 100, 65536):
        _check("a.json", document, chunk)
    _check("a.json", b"\xef\xbb\xbf[1, 2, 3]\n\n")
    _check("a.json", b'"just a string"')


@pytest.mark.parametrize(("data", "message"), [
    (b'{"a": [1, 2,, 3]}', "not valid JSON: unallowed token at this point in JSON text on line 1 (byte 13)"),
    (b'{"a": 1}\n{"b": 2}', "trailing garbage on line 2"),
    (b'{"a": [1, 2', "ends before the JSON document does"),
    (b"{'single': 'quotes'}", "not valid JSON"),
    (b'{"a": "\xff"}', "not UTF-8 text"),
    (b"   \n  ", "ends before the JSON document does"),
])
def test_bad_json_is_refused(data: bytes, message: str) -> None:
    assert message in _refused("a.json", data)


def test_a_json_error_deep_in_a_file_is_placed() -> None:
    data = b"[\n" + b'{"ok": true},\n' * 20_000 + b'{"ok": tru}\n]'
    message = _refused("a.json", data, chunk=65536)
    assert "on line 20,002" in message and "near" in message


# --- zip inspection -------------------------------------------------------------------------------------

LIMITS = ZipLimits(max_entries=100, max_uncompressed_bytes=8 * MIB, max_ratio=50)


def _inspect(data: bytes, limits: ZipLimits = LIMITS, reads: list[tuple[int, int]] | None = None) -> object:
    def read(offset: int, length: int) -> bytes:
        if reads is not None:
            reads.append((offset, length))
        return data[offset:offset + length]

    return inspect_zip(read, len(data), limits)


def _zip_refused(data: bytes, limits: ZipLimits = LIMITS) -> str:
    with pytest.raises(EvidenceError) as caught:
        _inspect(data, limits)
    return caught.value.message


def test_a_normal_zip_passes_and_nested_archives_are_counted_not_opened() -> None:
    inner = _zip({f"deep/{i}.txt": b"x" * 1000 for i in range(10)})
    data = _zip({"report.pdf": PDF + os.urandom(200_000), "inner.zip": inner, "notes.txt": b"hello " * 100})
    summary = _inspect(data)
    assert (summary.entries, summary.nested_archives) == (3, 1)  # type: ignore[attr-defined]


def test_the_directory_is_read_in_bounded_ranges_not_whole() -> None:
    big = _zip({"big.bin": os.urandom(6 * MIB), "small.txt": b"x"}, zipfile.ZIP_STORED)
    reads: list[tuple[int, int]] = []
    _inspect(big, reads=reads)
    assert sum(length for _, length in reads) < 70 * 1024  # the tail and the directory only


def test_too_many_entries_is_refused_before_the_directory_is_read() -> None:
    data = _zip({f"f{i}": b"" for i in range(101)}, zipfile.ZIP_STORED)
    reads: list[tuple[int, int]] = []
    with pytest.raises(EvidenceError, match="101 entries; at most 100"):
        _inspect(data, reads=reads)
    assert len(reads) == 1  # the end record only


def test_a_total_uncompressed_size_over_the_limit_is_refused() -> None:
    data = _zip({f"part{i}.bin": os.urandom(MIB) for i in range(3)}, zipfile.ZIP_STORED)
    assert "expand to more than 2 MiB" in _zip_refused(data, ZipLimits(100, 2 * MIB, 50))


def test_an_entry_with_a_bomb_ratio_is_refused_and_small_ones_are_exempt() -> None:
    assert "expands" in _zip_refused(_zip({"zeros": b"\x00" * (4 * MIB)}))
    # Highly compressible but small (XML parts of documents are): not a bomb.
    _inspect(_zip({"styles.xml": b" " * (RATIO_MIN_BYTES - 1)}))


def _patch_offsets(data: bytes, new_offset: int) -> bytes:
    """Point every central directory entry's local header offset at new_offset."""
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        struct.pack_into("<L", out, pos + 42, new_offset)
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def test_overlapping_entries_are_refused() -> None:
    data = _zip({"a.txt": b"alpha" * 100, "b.txt": b"beta" * 100})
    assert "overlap" in _zip_refused(_patch_offsets(data, 0))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: os.urandom(2000), "no end-of-directory record"),
    (lambda d: d[:-10], "no end-of-directory record"),
    (lambda d: d[:10], "too short"),
    (lambda d: d.replace(b"PK\x01\x02", b"PK\x09\x09", 1), "bad signature"),
    (lambda d: _patch_offsets(d, 10**6), "points past the data"),
])
def test_an_unreadable_directory_is_refused(damage: object, message: str) -> None:
    data = _zip({"a.txt": b"alpha" * 100, "b.txt": b"beta" * 100})
    got = _zip_refused(damage(data))  # type: ignore[operator]
    assert message in got and ("cannot be read" in got or "too short" in got)


def test_zip64_records_are_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Make Python's zipfile write ZIP64 sizes and end records for small files.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 100)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    data = _zip({f"f{i}.txt": os.urandom(500) for i in range(5)}, zipfile.ZIP_STORED)
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    assert _inspect(data).entries == 5  # type: ignore[attr-defined]
    assert "5 entries; at most 4" in _zip_refused(data, ZipLimits(4, 8 * MIB, 50))


def test_data_before_the_archive_shifts_offsets() -> None:
    data = b"#!/bin/sh self-extracting stub\n" * 10 + _zip({"a.txt": b"alpha"})
    assert _inspect(data).entries == 1  # type: ignore[attr-defined]
