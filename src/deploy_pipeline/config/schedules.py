"""A cron job's `schedule:` and `timezone:`, checked when the file is read rather than refused at
apply time. A schedule is read by croniter, then held to what Kubernetes' CronJob accepts (its
parser is Go's robfig/cron): five fields, no seconds or years, no L, W, # or H, days of the
week 0 to 6, ranges low to high, and only the descriptors it knows. A time zone is an IANA name
(zoneinfo's), as CronJob's `timeZone`."""

from __future__ import annotations

import functools
import re
import zoneinfo

from croniter import croniter

# The descriptors a CronJob's schedule takes (checked against kube-apiserver 1.36): names are
# lowercase, and `@reboot` is not one.
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
EVERY = "@every "
GO_DURATION = re.compile(r"((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+\Z")
SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of the month", 1, 31),
    ("month", 1, 12),
    ("day of the week", 0, 6),
)
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {m: i for i, m in enumerate(MONTHS, 1)},
    {d: i for i, d in enumerate(DAYS)},
)
ITEM = re.compile(r"(?P<low>\*|\?|\w+)(-(?P<high>\w+))?(/(?P<step>\d+))?\Z")
VALID = (
    'five fields (minute hour day-of-month month day-of-week) like "0 3 * * *" (03:00 every '
    'day) or "*/15 9-17 * * MON-FRI", or one of ' + ", ".join(MACROS) + ", or @every 1h30m"
)


def schedule_problem(schedule: str) -> str | None:
    """What is wrong with a CronJob schedule, or None when Kubernetes takes it."""
    reason = _reason(schedule)
    if reason is None:
        return None
    got = repr(schedule) if len(schedule) <= 60 else repr(schedule[:57]) + "..."
    return f"expected a cron schedule: {VALID}; got {got} ({reason})"


def _reason(schedule: str) -> str | None:
    text = schedule.strip()
    if "TZ" in text:
        return "a time zone goes in `timezone:`, not in the schedule"
    if text.startswith(EVERY):
        return _every(text.removeprefix(EVERY).strip())
    if text.startswith("@"):
        return None if text in MACROS else f"{text} is no descriptor Kubernetes knows"
    fields = text.split()
    if len(fields) != 5:
        return f"{len(fields)} field{'s' if len(fields) != 1 else ''}, not 5"
    for field, (what, low, high), names in zip(fields, FIELDS, NAMES, strict=True):
        for item in field.split(","):
            wrong = _item(item, what, low, high, names)
            if wrong:
                return wrong
    return None if croniter.is_valid(text) else "croniter cannot read it"


def _item(item: str, what: str, low: int, high: int, names: dict[str, int]) -> str | None:
    """One item of a field (`*/15`, `1-5`, `MON`) as robfig/cron reads it."""
    match = ITEM.fullmatch(item)
    if match is None:
        return f"{what} {item!r} is not a value, a range or a step"
    ends = []
    for part in (match["low"], match["high"]):
        if part is None or part in "*?":
            continue
        number = int(part) if part.isascii() and part.isdigit() else None
        value = names.get(part.lower(), number)
        if value is None:
            return f"{what} {part!r} is not a number" + (
                f" or one of {', '.join(n.upper() for n in names)}" if names else ""
            )
        if not low <= value <= high:
            hint = ": write 0 or SUN for Sunday" if what == "day of the week" and value == 7 else ""
            return f"{what} {value} is outside {low}-{high}{hint}"
        ends.append(value)
    if len(ends) == 2 and ends[0] > ends[1]:
        return f"{what} range {item!r} runs backwards (Kubernetes does not wrap around)"
    if match["step"] is not None and int(match["step"]) == 0:
        return f"{what} step 0 never moves on"
    return None


def _every(duration: str) -> str | None:
    if not GO_DURATION.fullmatch(duration):
        return f"@every takes a duration like 30m or 1h30m, not {duration!r}"
    parts = re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)", duration)
    if sum(float(n) * SECONDS[u] for n, u in parts) < 1:
        return "@every runs at most once a second"
    return None


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_problem(name: str) -> str | None:
    """What is wrong with a CronJob time zone, or None for an IANA name."""
    if name in _zones():
        return None
    close = sorted(z for z in _zones() if z.lower() == name.lower())
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        "expected an IANA time zone name like Europe/Paris, America/New_York or UTC, got "
        f"{name!r}{hint}"
    )
