"""HTTP-date formatting and parsing (RFC 9110 §5.6.7).

Servers stamp ``Date`` and ``Last-Modified`` on nearly every response, so formatting
avoids :func:`time.strftime` (locale-dependent, and slower) and caches the last second
it formatted.  Parsing accepts the three formats RFC 9110 obliges recipients to accept
and returns ``None`` instead of raising, because a bad date in a request header must be
ignored, never turned into a 500.
"""

from __future__ import annotations

import math
import re
import time

__all__ = ["format_http_date", "parse_http_date"]

# time.gmtime(): tm_wday 0 is Monday.
_DAY_NAMES: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES: tuple[str, ...] = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)
_MONTHS: dict[str, int] = {name: i + 1 for i, name in enumerate(_MONTH_NAMES)}
_DAYS_IN_MONTH: tuple[int, ...] = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# One-entry cache: (whole second, formatted).  Many responses share the same second;
# replacing the tuple is atomic, so concurrent threads see a consistent pair.
_last: tuple[int, str] = (-(1 << 62), "")


def format_http_date(ts: float) -> str:
    """Format Unix time ``ts`` as an IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``.

    Fractions of a second are floored (an HTTP-date has whole seconds only).  Raises
    ``ValueError`` if the time cannot be written with a four-digit year, since emitting
    a malformed date would be worse than failing loudly.
    """
    global _last
    try:
        sec = math.floor(ts)
        cached = _last
        if cached[0] == sec:
            return cached[1]
        t = time.gmtime(sec)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"timestamp out of range for an HTTP-date: {ts!r}") from exc
    if not 0 <= t.tm_year <= 9999:
        raise ValueError(f"timestamp out of range for an HTTP-date: {ts!r}")
    text = (
        f"{_DAY_NAMES[t.tm_wday]}, {t.tm_mday:02d} {_MONTH_NAMES[t.tm_mon - 1]} "
        f"{t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
    _last = (sec, text)
    return text


# The grammar is case-sensitive (RFC 9110 §5.6.7), digits are ASCII only.
_IMF_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
_RFC850_RE = re.compile(
    r"(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    r"([0-9]{2})-([A-Z][a-z]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
_ASCTIME_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([0-9]{2}| [0-9]) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})"
)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).

    Used instead of calendar.timegm because that goes through datetime and rejects year 0.
    """
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _to_seconds(year: int, month_name: str, day: int, hh: int, mm: int, ss: int) -> int | None:
    month = _MONTHS.get(month_name)
    if month is None or hh > 23 or mm > 59 or ss > 60 or day < 1:
        return None
    dim = _DAYS_IN_MONTH[month - 1]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        dim = 29
    if day > dim:
        return None
    # A leap second (ss == 60) lands on the first second of the next minute, like timegm.
    return _days_from_civil(year, month, day) * 86400 + hh * 3600 + mm * 60 + ss


def parse_http_date(value: str) -> int | None:
    """Parse an HTTP-date into Unix seconds; ``None`` if it is not a valid one.

    Accepts IMF-fixdate, the obsolete RFC 850 form (two-digit years below 70 are 20xx,
    others 19xx) and C asctime().  The weekday name must be a valid one but is not
    cross-checked against the date: RFC 9110 asks recipients to be robust, and the
    date itself is what matters.  Never raises.
    """
    if not isinstance(value, str) or len(value) > 64:
        return None
    value = value.strip(" \t")
    try:
        m = _IMF_RE.fullmatch(value)
        if m is not None:
            return _to_seconds(int(m[4]), m[3], int(m[2]), int(m[5]), int(m[6]), int(m[7]))
        m = _RFC850_RE.fullmatch(value)
        if m is not None:
            yy = int(m[4])
            year = 2000 + yy if yy < 70 else 1900 + yy
            return _to_seconds(year, m[3], int(m[2]), int(m[5]), int(m[6]), int(m[7]))
        m = _ASCTIME_RE.fullmatch(value)
        if m is not None:
            return _to_seconds(int(m[7]), m[2], int(m[3]), int(m[4]), int(m[5]), int(m[6]))
    except ValueError:  # pragma: no cover - the regexes only admit ASCII digits
        return None
    return None
