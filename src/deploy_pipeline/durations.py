"""How long something took, in words: the one home of every duration format.

Each view says a duration its own way on purpose, so each way has a name here:

- `brief`: the live view and waiting sentences, short and exact enough: 850ms, 4.2s, 41s, 3m05s
- `tenths`: a table cell or a closing line, always seconds: 0.3s, 4.2s, 75.0s
- `tenths_or_minutes`: the Markdown tables and headlines: 4.2s, 59.9s, 3m05s
- `hundredths`: the plain event lines, to compare step by step: 0.85s, 4.21s
- `whole`: a commit status's few words, or a limit someone set: 12s, 300s
"""

from __future__ import annotations


def brief(value: float) -> str:
    """850ms, 4.2s, 41s, 3m05s (a negative duration is 0ms)."""
    value = max(value, 0.0)
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes}m{secs:02d}s"


def tenths(value: float) -> str:
    """4.2s, 75.0s."""
    return f"{value:.1f}s"


def tenths_or_minutes(value: float) -> str:
    """4.2s under a minute, then 3m05s."""
    return tenths(value) if value < 60 else f"{int(value // 60)}m{int(value % 60):02d}s"


def hundredths(value: float) -> str:
    """4.21s."""
    return f"{value:.2f}s"


def whole(value: float) -> str:
    """12s, 300s."""
    return f"{value:.0f}s"
