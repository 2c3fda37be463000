"""The Kubernetes test bed as pytest sees it: a kubeconfig for a real control plane with kwok
nodes (`scripts/kube-testenv start`), or a cluster of the user's own with
DP_TEST_KUBECONFIG=path (kind, k3d…). Tests across two clusters use a second control plane
(`DP_KUBE_DIR=$TMPDIR/dp-kube-2 scripts/kube-testenv start`, or DP_TEST_KUBECONFIG_2).
Missing: skip by hand, fail under CI=true."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.docker_testbed import unavailable

TMP = Path(os.environ.get("TMPDIR", "/tmp"))


def state_dir(second: bool = False) -> Path:
    if second:
        return Path(os.environ.get("DP_KUBE_DIR_2", TMP / "dp-kube-2"))
    return Path(os.environ.get("DP_KUBE_DIR", TMP / "dp-kube"))


def find_kubeconfig(second: bool = False) -> Path | str:
    own = os.environ.get("DP_TEST_KUBECONFIG_2" if second else "DP_TEST_KUBECONFIG")
    if own:
        return Path(own)
    folder = state_dir(second)
    env_file = folder / "env"
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            if key == "KUBECONFIG" and Path(value).is_file():
                return Path(value)
    prefix = f"DP_KUBE_DIR={folder} " if second else ""
    return (
        f"no {'second ' if second else ''}Kubernetes test bed: run "
        f"`scripts/kube-testenv build && {prefix}scripts/kube-testenv start`"
    )


def require_kubeconfig(second: bool = False) -> Path:
    found = find_kubeconfig(second)
    if isinstance(found, str):
        unavailable(found)
    return found


def control_plane_pid(component: str) -> int:
    """The PID of a component `scripts/kube-testenv start` started (for fault tests)."""
    pid_file = state_dir() / f"{component}.pid"
    if os.environ.get("DP_TEST_KUBECONFIG") or not pid_file.is_file():
        unavailable(f"needs the local control plane's {component} (scripts/kube-testenv start)")
    return int(pid_file.read_text().strip())


def delete_namespace(kubeconfig: Path, name: str) -> None:
    """Remove a test's namespace from the cluster (gone already is fine)."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        client.CoreV1Api(api).delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    finally:
        api.close()


@contextmanager
def kube_clients(kubeconfig: Path) -> Iterator[dict[str, Any]]:
    """The cluster's APIs by short name, on one connection closed afterwards."""
    from kubernetes import client, config
    from kubernetes.dynamic import DynamicClient

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield {
            "core": client.CoreV1Api(api),
            "apps": client.AppsV1Api(api),
            "batch": client.BatchV1Api(api),
            "net": client.NetworkingV1Api(api),
            "hpa": client.AutoscalingV2Api(api),
            "policy": client.PolicyV1Api(api),
            "dynamic": DynamicClient(api),
        }
    finally:
        api.close()
