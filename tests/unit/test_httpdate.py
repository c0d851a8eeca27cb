"""Tests for hemi.web.httpdate."""

from __future__ import annotations

import calendar
import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hemi.web.httpdate import format_http_date, parse_http_date
from hemi.web.mime import MIME_TYPES, guess_type

SUNDAY = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (SUNDAY, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (SUNDAY + 0.999, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
        (-0.5, "Wed, 31 Dec 1969 23:59:59 GMT"),
        (951782400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        (1700000000, "Tue, 14 Nov 2023 22:13:20 GMT"),
    ],
)
def test_format(ts: float, expected: str) -> None:
    assert format_http_date(ts) == expected
    assert format_http_date(ts) == expected  # second call hits the cache


@pytest.mark.parametrize("ts", [float("inf"), float("-inf"), float("nan"), 1e300, 253402300800])
def test_format_out_of_range(ts: float) -> None:
    with pytest.raises(ValueError):
        format_http_date(ts)


@given(st.integers(min_value=-(2**35), max_value=253402300799))
def test_format_matches_email_utils_and_round_trips(ts: int) -> None:
    text = format_http_date(ts)
    if ts >= 0:
        assert text == email.utils.formatdate(ts, usegmt=True)
    assert parse_http_date(text) == ts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", SUNDAY),
        ("Sunday, 06-Nov-94 08:49:37 GMT", SUNDAY),
        ("Sun Nov  6 08:49:37 1994", SUNDAY),
        ("Sun Nov 06 08:49:37 1994", SUNDAY),  # asctime allows 2DIGIT day too
        ("  Sun, 06 Nov 1994 08:49:37 GMT\t", SUNDAY),  # OWS around a field value
        ("Mon, 06 Nov 1994 08:49:37 GMT", SUNDAY),  # weekday not cross-checked
        ("Thursday, 01-Jan-70 00:00:00 GMT", 0),
        ("Saturday, 01-Jan-00 00:00:00 GMT", 946684800),  # < 70 -> 20xx
        ("Monday, 31-Dec-69 23:59:59 GMT", 3155759999),
        ("Tue, 29 Feb 2000 00:00:00 GMT", 951782400),
        ("Thu, 29 Feb 2024 12:00:00 GMT", calendar.timegm((2024, 2, 29, 12, 0, 0))),
        ("Sat, 31 Dec 2016 23:59:60 GMT", calendar.timegm((2017, 1, 1, 0, 0, 0))),  # leap second
        ("Mon, 01 Jan 0001 00:00:00 GMT", -62135596800),
        ("Sat, 01 Jan 0000 00:00:00 GMT", -62167219200),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 253402300799),
        ("Wed, 31 Dec 1969 23:59:59 GMT", -1),
    ],
)
def test_parse_valid(value: str, expected: int) -> None:
    assert parse_http_date(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "GMT",
        "garbage",
        "Sun, 06 Nov 1994 08:49:37",  # no zone
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 gmt",  # case-sensitive
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 NOV 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",  # IMF needs 2DIGIT day
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT extra",
        "Sun, 06 Nov 1994 08:49:37 GMT\n",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 00 Nov 1994 08:49:37 GMT",  # day 0
        "Sun, 31 Nov 1994 08:49:37 GMT",  # November has 30 days
        "Sun, 32 Jan 1994 08:49:37 GMT",
        "Sun, 29 Feb 1900 00:00:00 GMT",  # 1900 is not a leap year
        "Sun, 29 Feb 2023 00:00:00 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 23:60:00 GMT",
        "Sun, 06 Nov 1994 23:59:61 GMT",
        "Sun, 06 Nov 1994 99:99:99 GMT",
        "Sun, 06 Nov 1994 08:49:37.5 GMT",
        "Sun, 06 Nov 19945 08:49:37 GMT",
        "Sun, 06 Nov -994 08:49:37 GMT",
        "Sun, ٠٦ Nov 1994 08:49:37 GMT",  # Arabic-Indic digits must not count as digits
        "Sun, 06 Nov １９９４ 08:49:37 GMT",  # full-width digits
        "Sunday, 06-Nov-1994 08:49:37 GMT",  # RFC 850 has a 2-digit year
        "Sun, 06-Nov-94 08:49:37 GMT",  # RFC 850 needs the full day name
        "Sunday, 31-Apr-94 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",  # asctime needs SP SP DIGIT
        "Sun Nov  6 08:49:37 1994 GMT",
        "Sun Nov  6 08:49:37 94",
        "Sun Feb 29 00:00:00 2023",
        "Sunday Nov  6 08:49:37 1994",
        "1994-11-06T08:49:37Z",
        "784111777",
        "Sun, 06 Nov 1994 08:49:37 GMT" + " " * 100,  # oversized input rejected fast
        "9" * 10000,
        "\x00Sun, 06 Nov 1994 08:49:37 GMT",
    ],
)
def test_parse_invalid(value: str) -> None:
    assert parse_http_date(value) is None


@pytest.mark.parametrize("value", [None, b"Sun, 06 Nov 1994 08:49:37 GMT", 784111777])
def test_parse_non_str_never_raises(value: object) -> None:
    assert parse_http_date(value) is None  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_parse_never_raises(value: str) -> None:
    result = parse_http_date(value)
    assert result is None or isinstance(result, int)


@given(
    st.sampled_from(["%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]),
    st.integers(min_value=0, max_value=2**31 - 1),
)
def test_parse_three_formats(fmt: str, ts: int) -> None:
    import time

    text = time.strftime(fmt, time.gmtime(ts))  # C locale in tests: English names
    expected = ts
    if "%y" in fmt:
        year = time.gmtime(ts).tm_year
        if year >= 2070 or year < 1970:
            return  # outside the 2-digit window
    assert parse_http_date(text) == expected


# ---- mime (kept here: the module is a table plus one function) -------------------------

REQUIRED = (
    "html htm css js mjs json xml txt csv md svg png jpg jpeg gif webp avif ico bmp tif tiff "
    "mp3 mp4 m4a webm ogg ogv oga wav flac mov mpeg mpg avi pdf zip gz tgz bz2 xz 7z rar tar "
    "wasm woff woff2 ttf otf eot doc docx xls xlsx ppt pptx rtf rss atom jar war deb dmg exe "
    "dll bin iso img"
).split()


def test_mime_table_covers_required() -> None:
    missing = [ext for ext in REQUIRED if ext not in MIME_TYPES]
    assert missing == []
    for ext, ctype in MIME_TYPES.items():
        assert ext == ext.lower() and not ext.startswith(".")
        main = ctype.split(";")[0]
        if main.startswith("text/") or ext in ("js", "mjs", "json", "xml", "svg"):
            assert ctype.endswith("; charset=utf-8"), ext


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("/a/b/INDEX.HTML", "text/html; charset=utf-8"),
        ("app.min.js", "text/javascript; charset=utf-8"),
        ("photo.JpG", "image/jpeg"),
        ("archive.tar.gz", "application/gzip"),
        ("font.woff2", "font/woff2"),
        ("data.json", "application/json; charset=utf-8"),
        ("logo.svg", "image/svg+xml; charset=utf-8"),
        ("README", "application/octet-stream"),
        ("/v1.2/README", "application/octet-stream"),  # dot in a directory is not an extension
        ("C:\\v1.2\\README", "application/octet-stream"),
        ("file.", "application/octet-stream"),
        (".bashrc", "application/octet-stream"),
        ("/x/.html", "application/octet-stream"),
        ("file.unknownext", "application/octet-stream"),
        ("", "application/octet-stream"),
    ],
)
def test_guess_type(path: str, expected: str) -> None:
    assert guess_type(path) == expected


def test_guess_type_custom_table_and_default() -> None:
    table = {"foo": "application/x-foo"}
    assert guess_type("a.FOO", table) == "application/x-foo"
    assert guess_type("a.html", table) == "application/octet-stream"
    assert guess_type("a.bar", table, default="text/plain") == "text/plain"
