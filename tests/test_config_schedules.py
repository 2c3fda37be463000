"""A cron job's `schedule:` and `timezone:` as the file is read: what Kubernetes' CronJob would
refuse at apply time is a located config error saying what a valid schedule looks like."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_pipeline.backends import manifests
from deploy_pipeline.cli import main
from deploy_pipeline.config import load_config
from deploy_pipeline.errors import ConfigErrors

WriteConfig = Callable[..., Path]
VALID = (
    'expected a cron schedule: five fields (minute hour day-of-month month day-of-week) like "0 '
    '3 * * *" (03:00 every day) or "*/15 9-17 * * MON-FRI", or one of @yearly, @annually, '
    "@monthly, @weekly, @daily, @midnight, @hourly, or @every 1h30m; got "
)


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_config(path)
    return [str(error) for error in caught.value.errors]


def report(write_config: WriteConfig, extra: str) -> Path:
    """A pipeline of one job, `extra` lines added to it (indented four spaces)."""
    return write_config(
        "version: 1\nservices:\n  report:\n    type: job\n    image: report:1\n" + extra + "\n"
    )


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ("every tuesday-ish", "2 fields, not 5"),
        ("0 0 0 * * *", "6 fields, not 5"),
        ("0 0 * * 7", "day of the week 7 is outside 0-6: write 0 or SUN for Sunday"),
        ("0 24 * * *", "hour 24 is outside 0-23"),
        ("0 0 L * *", "day of the month 'L' is not a number"),
        ("0 0 * * 5#3", "day of the week '5#3' is not a value, a range or a step"),
        (
            "0 0 * * FRI-MON",
            "day of the week range 'FRI-MON' runs backwards (Kubernetes does not wrap around)",
        ),
        ("@reboot", "@reboot is no descriptor Kubernetes knows"),
        ("@every fortnight", "@every takes a duration like 30m or 1h30m, not 'fortnight'"),
        ("TZ=UTC 0 3 * * *", "a time zone goes in `timezone:`, not in the schedule"),
    ],
)
def test_a_schedule_kubernetes_refuses_is_a_config_error_at_its_line(
    write_config: WriteConfig, schedule: str, why: str
) -> None:
    """The line, the key path, what a valid schedule looks like, and why this one is not."""
    path = report(write_config, f'    schedule: "{schedule}"')
    assert problems(path) == [f"{path}:6: services.report.schedule: {VALID}'{schedule}' ({why})"]


@pytest.mark.parametrize(
    "schedule",
    ["0 3 * * *", "*/15 9-17 * * MON-FRI", "0 0 1,15 JAN-jun ?", "@daily", "@every 1h30m"],
)
def test_schedules_kubernetes_takes_load(write_config: WriteConfig, schedule: str) -> None:
    """Five fields (names in either case, `?`), the lowercase descriptors and @every load."""
    path = report(write_config, f'    schedule: "{schedule}"')
    assert load_config(path).services["report"].schedule == schedule


def test_a_time_zone_is_an_iana_name_and_only_for_a_cron_job(write_config: WriteConfig) -> None:
    """A name zoneinfo does not know (with the right case suggested), and a time zone on a job
    with no schedule, are config errors at their lines."""
    path = write_config(
        """\
        version: 1
        services:
          report: {type: job, image: report:1, schedule: "0 3 * * *", timezone: europe/paris}
          nightly: {type: job, image: report:1, schedule: "@daily", timezone: Mars/Olympus}
          once: {type: job, image: report:1, timezone: UTC}
        """
    )
    assert problems(path) == [
        f"{path}:3: services.report.timezone: expected an IANA time zone name like Europe/Paris, "
        "America/New_York or UTC, got 'europe/paris' (did you mean 'Europe/Paris'?)",
        f"{path}:4: services.nightly.timezone: expected an IANA time zone name like "
        "Europe/Paris, America/New_York or UTC, got 'Mars/Olympus'",
        f"{path}:5: services.once.timezone: only a cron job (a job with `schedule:`) has a time "
        "zone: add `schedule:` or remove `timezone:`",
    ]


def test_a_time_zone_becomes_the_cron_job_s_time_zone(write_config: WriteConfig) -> None:
    """`timezone:` is the CronJob's spec.timeZone; without it the CronJob has none (UTC)."""
    path = report(write_config, '    schedule: "0 3 * * *"\n    timezone: Europe/Paris')
    svc = load_config(path).services["report"]
    assert svc.timezone == "Europe/Paris"
    (cronjob,) = manifests.service_objects("staging", svc, "report:1", run="r")
    assert cronjob["spec"]["timeZone"] == "Europe/Paris"
    assert cronjob["spec"]["schedule"] == "0 3 * * *"
    path = report(write_config, '    schedule: "0 3 * * *"')
    (cronjob,) = manifests.service_objects(
        "staging", load_config(path).services["report"], "report:1", run="r"
    )
    assert "timeZone" not in cronjob["spec"]


def test_plan_shows_a_cron_job_s_time_zone(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` names the schedule and the time zone it runs in."""
    path = report(
        write_config,
        '    schedule: "0 3 * * *"\n    timezone: Europe/Paris\nenvironments: {staging: {}}',
    )
    assert main(["plan", "-f", str(path), "-e", "staging"]) == 0
    assert "report           job          prebuilt report:1, cron 0 3 * * * (Europe/Paris)" in (
        capsys.readouterr().out
    )
