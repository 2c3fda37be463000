"""durations.py: each named way of saying a duration, byte for byte as the views said it before."""

from __future__ import annotations

import pytest

from deploy_pipeline.durations import brief, hundredths, tenths, tenths_or_minutes, whole


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (-1.0, "0ms"),
        (0.85, "850ms"),
        (4.24, "4.2s"),
        (9.96, "10.0s"),
        (41.4, "41s"),
        (185, "3m05s"),
    ],
)
def test_brief_is_the_live_view_s(value: float, said: str) -> None:
    """The live view's and the waiting sentences' durations: ms under a second, m and s past one
    minute."""
    assert brief(value) == said


def test_the_other_variants_keep_their_own_form() -> None:
    """Tables and closing lines say tenths, Markdown turns to minutes past 60s, the event lines
    say hundredths and a commit status whole seconds: each as its view always did."""
    assert [tenths(4.24), tenths(75.0)] == ["4.2s", "75.0s"]
    assert [tenths_or_minutes(59.94), tenths_or_minutes(185.5)] == ["59.9s", "3m05s"]
    assert [hundredths(0.854), hundredths(4.2)] == ["0.85s", "4.20s"]
    assert [whole(12.4), whole(300)] == ["12s", "300s"]
