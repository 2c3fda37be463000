"""The Kubernetes test bed as pytest sees it: a kubeconfig for a real control plane with kwok
nodes (`scripts/kube-testenv start`), or a cluster of the user's own with
DP_TEST_KUBECONFIG=path (kind, k3d…). Missing: skip by hand, fail under CI=true."""

from __future__ import annotations

import os
from pathlib import Path

from tests.docker_testbed import unavailable


def find_kubeconfig() -> Path | str:
    own = os.environ.get("DP_TEST_KUBECONFIG")
    if own:
        return Path(own)
    env_file = (
        Path(os.environ.get("DP_KUBE_DIR", Path(os.environ.get("TMPDIR", "/tmp")) / "dp-kube"))
        / "env"
    )
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            if key == "KUBECONFIG" and Path(value).is_file():
                return Path(value)
    return "no Kubernetes test bed: run `scripts/kube-testenv build && scripts/kube-testenv start`"


def require_kubeconfig() -> Path:
    found = find_kubeconfig()
    if isinstance(found, str):
        unavailable(found)
    return found


def control_plane_pid(component: str) -> int:
    """The PID of a component `scripts/kube-testenv start` started (for fault tests)."""
    state = Path(os.environ.get("DP_KUBE_DIR", Path(os.environ.get("TMPDIR", "/tmp")) / "dp-kube"))
    pid_file = state / f"{component}.pid"
    if os.environ.get("DP_TEST_KUBECONFIG") or not pid_file.is_file():
        unavailable(f"needs the local control plane's {component} (scripts/kube-testenv start)")
    return int(pid_file.read_text().strip())
