"""Cron jobs on a real control plane: the schedules deploy-pipeline takes when it reads the file
are the ones the API server's CronJob validation takes, and `timezone:` is the CronJob's
timeZone."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from deploy_pipeline.cli import main
from deploy_pipeline.config.schedules import schedule_problem, timezone_problem

pytestmark = pytest.mark.engine

# Refused by both sides. Taken by the API server but refused on purpose when the file is read:
# `@every` under a second (it would run every second), and what croniter cannot read although
# robfig/cron takes it (`? ? ? ? ?`, an empty list item like `1,2,`).
SCHEDULES = [
    "0 3 * * *",
    "*/15 9-17 * * MON-FRI",
    "0 0 1,15 JAN-jun ?",
    "0-59/15 * * * *",
    "0/5 * * * *",
    "*/60 * * * *",
    "0 0 31 2 *",
    "  0 3 * * *  ",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
    "@every 5m",
    "@every 1h30m",
    "@reboot",
    "@DAILY",
    "@every fortnight",
    "every tuesday-ish",
    "0 0 0 * * *",
    "0 0 * * 7",
    "0 0 * * 0-7",
    "0 24 * * *",
    "60 0 * * *",
    "0 0 0 * *",
    "0 0 * 13 *",
    "0 0 L * *",
    "0 0 1W * *",
    "0 0 * * 5#3",
    "H 0 * * *",
    "5-1 * * * *",
    "0 0 * * SAT-SUN",
    "*/0 * * * *",
    "/5 * * * *",
    "0 0 * * sunday",
    "TZ=UTC 0 0 * * *",
    "CRON_TZ=UTC 0 0 * * *",
]
TIMEZONES = ["UTC", "Europe/Paris", "America/New_York", "Etc/GMT+5", "europe/paris", "Local"]


@pytest.fixture
def batch(kube_env: Path) -> Iterator[Any]:
    api = config.new_client_from_config(config_file=str(kube_env))
    yield client.BatchV1Api(api)
    api.close()


def server_takes(batch: Any, namespace: str, schedule: str, timezone: str | None = None) -> bool:
    """Whether the API server validates a CronJob with this schedule (a dry run: nothing made)."""
    spec: dict[str, Any] = {
        "schedule": schedule,
        "jobTemplate": {
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "c"}]}
                }
            }
        },
    }
    if timezone is not None:
        spec["timeZone"] = timezone
    body = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": spec,
    }
    try:
        batch.create_namespaced_cron_job(namespace, body, dry_run="All")
    except client.ApiException as exc:
        assert exc.status == 422, exc.body
        return False
    return True


def test_schedules_are_taken_exactly_when_the_api_server_takes_them(
    kube_namespace: str, batch: Any
) -> None:
    """Each schedule and time zone above is accepted when the file is read if and only if the
    API server's own CronJob validation accepts it."""
    client.CoreV1Api(batch.api_client).create_namespace({"metadata": {"name": kube_namespace}})
    ours = {s: schedule_problem(s) is None for s in SCHEDULES}
    theirs = {s: server_takes(batch, kube_namespace, s) for s in SCHEDULES}
    assert ours == theirs
    ours = {z: timezone_problem(z) is None for z in TIMEZONES}
    theirs = {z: server_takes(batch, kube_namespace, "0 3 * * *", z) for z in TIMEZONES}
    assert ours == theirs


def test_a_cron_job_runs_on_its_time_zone(
    kube_namespace: str,
    batch: Any,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`timezone:` reaches the CronJob the API server holds, with its schedule."""
    path = write_config(
        f"""\
        version: 1
        targets: {{eu: {{kind: kubernetes}}}}
        services:
          report: {{type: job, image: report:1, schedule: "0 3 * * 1-5", timezone: Europe/Paris}}
        environments: {{{kube_namespace}: {{target: eu}}}}
        """
    )
    code = main(["deploy", "-f", str(path), "-e", kube_namespace, "--events", "jsonl"])
    out, err = capsys.readouterr()
    assert code == 0, err
    done = [json.loads(line) for line in out.splitlines()][-1]
    assert done["status"] == "succeeded"
    cronjob = batch.read_namespaced_cron_job("report", kube_namespace)
    assert (cronjob.spec.schedule, cronjob.spec.time_zone) == ("0 3 * * 1-5", "Europe/Paris")
