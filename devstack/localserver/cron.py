"""Cron expressions as the real Resonate server reads them, and their next tick.

The real server (``util.rs`` ``is_valid_cron`` / ``compute_next_cron``)
hands a schedule's expression to the Rust ``cron`` crate 0.12 after one
normalisation: an expression of exactly five whitespace-separated fields gets
a leading ``0`` seconds field. So the dialect is that crate's, which is
Quartz-like, not Vixie cron's:

- six or seven fields: second, minute, hour, day of month, month, day of
  week, optional year (1970-2100); five fields mean ``0`` seconds;
- day of week runs 1-7 with **Sunday = 1** (``0 9 * * 1`` is Sundays at 9,
  and ``* * * * 0`` is invalid); names ``sun``..``sat`` and ``jan``..``dec``
  (and long forms) in any case;
- ``*``, ``n``, ``a-b``, ``x/step`` (from a point, ``*``, or a range), lists
  with ``,``; ``?`` only in day of month and day of week; no ``L``, ``W``, ``#``;
- a day must match day of month **and** day of week (not either, as in Vixie cron);
- ``@yearly``, ``@monthly``, ``@weekly`` (Sundays), ``@daily``, ``@hourly``
  (anything after the word is ignored, as the crate's parser does);
- ticks are UTC and whole seconds: the next tick after ``t`` ms is the first
  one strictly after ``t`` truncated to the second. With no tick left (say
  30 February, or a year gone by), the server retries 60 s later
  (``compute_next_cron`` falls back to ``after + 60_000``), so do we.

:func:`parse` is the grammar, exact and pure, so validation answers what the
real server answers. The search for the next tick is croniter's (well kept,
under the pallets-eco organisation), fed the parsed fields as explicit lists
in its own dialect: seconds first, days of week 0-6, ``day_or=False`` for the
crate's AND of the two day fields. One difference: croniter's years end at
2099, the crate's at 2100, so a schedule left with only 2100 never fires here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import NamedTuple

from croniter import CroniterBadDateError, croniter

#: Per field: (lowest, highest, names). Days of week are the crate's 1-7, Sunday first.
_MONTHS = {
    **{m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun"), 1)},
    **{m: i for i, m in enumerate(("jul", "aug", "sep", "oct", "nov", "dec"), 7)},
    "january": 1, "february": 2, "march": 3, "april": 4, "june": 6, "july": 7,
    "august": 8, "sept": 9, "september": 9, "october": 10, "november": 11, "december": 12,
}  # fmt: skip
_DAYS = {
    "sun": 1, "sunday": 1, "mon": 2, "monday": 2, "tue": 3, "tues": 3, "tuesday": 3,
    "wed": 4, "wednesday": 4, "thu": 5, "thurs": 5, "thursday": 5, "fri": 6, "friday": 6,
    "sat": 7, "saturday": 7,
}  # fmt: skip
_FIELDS: tuple[tuple[int, int, dict[str, int] | None], ...] = (
    (0, 59, None),  # second
    (0, 59, None),  # minute
    (0, 23, None),  # hour
    (1, 31, None),  # day of month
    (1, 12, _MONTHS),  # month
    (1, 7, _DAYS),  # day of week
    (1970, 2100, None),  # year
)
_DOM, _DOW = 3, 5
_SHORTHANDS = {
    "@yearly": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 1",
    "@daily": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_ITEM = re.compile(
    r"(?P<base>\*|\?|(?P<a>\d+)-(?P<b>\d+)|(?P<point>\d+)|(?P<na>[A-Za-z]+)-(?P<nb>[A-Za-z]+)|(?P<name>[A-Za-z]+))"
    r"(?:/(?P<step>\d+))?"
)
#: croniter's years stop at 2099 (the crate's at 2100).
_CRONITER_LAST_YEAR = 2099
_FALLBACK_MS = 60_000


class Cron(NamedTuple):
    """A parsed expression: the allowed values of each of the seven fields."""

    fields: tuple[frozenset[int], ...]


def _u32(digits: str) -> int | None:
    value = int(digits)
    return value if value < 1 << 32 else None


def _name(text: str, names: dict[str, int] | None) -> int | None:
    return None if names is None else names.get(text.lower())


def _item(text: str, index: int) -> set[int] | None:
    """One comma-separated item of field ``index``, as the set of values it allows."""
    low, high, names = _FIELDS[index]
    m = _ITEM.fullmatch(text)
    if m is None:
        return None
    step = m.group("step")
    base = m.group("base")
    if base == "?" and index not in (_DOM, _DOW):
        return None
    if m.group("name") is not None:
        if step is not None:
            return None  # the crate has no "Tues/2"
        value = _name(base, names)
        return None if value is None else {value}
    if base in ("*", "?"):
        values = list(range(low, high + 1))
    elif m.group("point") is not None:
        point = _u32(m.group("point"))
        if point is None or not low <= point <= high:
            return None
        values = [point] if step is None else list(range(point, high + 1))
    else:
        if m.group("a") is not None:
            start, end = _u32(m.group("a")), _u32(m.group("b"))
        else:
            start, end = _name(m.group("na"), names), _name(m.group("nb"), names)
        if start is None or end is None or not low <= start <= end <= high:
            return None
        values = list(range(start, end + 1))
    if step is None:
        return set(values)
    every = _u32(step)
    if not every:
        return None  # a step of 0 (the crate would loop forever)
    return set(values[::every])


def parse(expression: str) -> Cron | None:
    """``expression`` as the real server reads it, or ``None`` when it answers 400 "Invalid cron expression"."""
    text = expression.strip()
    if len(text.split()) == 5:
        text = "0 " + text
    for word, fields in _SHORTHANDS.items():
        if text.startswith(word):
            text = fields
            break
    parts = text.split()
    if len(parts) not in (6, 7):
        return None
    fields: list[frozenset[int]] = []
    for index, part in enumerate(parts):
        allowed: set[int] = set()
        for item in part.split(","):
            values = _item(item, index)
            if values is None:
                return None
            allowed |= values
        fields.append(frozenset(allowed))
    if len(fields) == 6:
        low, high, _ = _FIELDS[6]
        fields.append(frozenset(range(low, high + 1)))
    return Cron(tuple(fields))


def is_valid(expression: str) -> bool:
    return parse(expression) is not None


def _croniter_field(values: frozenset[int], index: int) -> str:
    low, high, _ = _FIELDS[index]
    if index == 6:
        values = frozenset(v for v in values if v <= _CRONITER_LAST_YEAR)
        if len(values) == _CRONITER_LAST_YEAR - low + 1:
            return "*"
    elif len(values) == high - low + 1:
        return "*"
    if index == _DOW:
        values = frozenset(v - 1 for v in values)  # croniter: Sunday = 0
    return ",".join(str(v) for v in sorted(values))


def next_tick(cron: Cron, after_ms: int) -> int:
    """The first tick strictly after ``after_ms`` truncated to the second, in ms (``after_ms + 60 s`` if none)."""
    after_s = int(after_ms / 1000)  # Rust's `/` truncates toward zero
    start = datetime.fromtimestamp(after_s, UTC)
    fields = [_croniter_field(values, i) for i, values in enumerate(cron.fields)]
    if fields[6] == "":
        return after_ms + _FALLBACK_MS
    years = max(1, _FIELDS[6][1] - start.year + 1)
    try:
        it = croniter(" ".join(fields), start, day_or=False, second_at_beginning=True, max_years_between_matches=years)
        return int(it.get_next(float)) * 1000
    except (CroniterBadDateError, ValueError, OverflowError):
        return after_ms + _FALLBACK_MS
