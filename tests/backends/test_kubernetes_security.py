"""A built service runs restricted on Kubernetes where its image allows it (DESIGN.md §11): an
image that names a non-root USER runs with runAsNonRoot; one with no USER (root) runs as root
rather than never starting; `security: {run_as_root: false}` insists. The images are built on
the local engine and pushed to the test registry, as a deploy does."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from deploy_pipeline.backends.kubernetes import as_its_user
from deploy_pipeline.cli import main
from deploy_pipeline.model import BuildSpec, Security, Service
from tests.support.docker_testbed import DockerBed, busybox_context

pytestmark = pytest.mark.engine


def test_the_images_user_decides_only_when_the_file_does_not() -> None:
    """No USER, root or 0 → root; a named user → restricted; the file's choice wins; an image
    the engine does not have changes nothing."""
    svc = Service("api", "application", "apps", build=BuildSpec("."))
    for user in ("", "root", "0", "0:0", "root:root"):
        assert as_its_user(svc, user).security.run_as_root is True
    for user in ("1000", "app", "1000:1000"):
        assert as_its_user(svc, user).security.run_as_root is None
    insisted = Service("api", "application", "apps", build=BuildSpec("."), security=Security(False))
    assert as_its_user(insisted, "").security.run_as_root is False
    assert as_its_user(svc, None) is svc


def pod_security(kube_env: Path, namespace: str, name: str) -> Any:
    api = config.new_client_from_config(config_file=str(kube_env))
    try:
        found = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
        return found.spec.template.spec.security_context
    finally:
        api.close()


def test_a_built_image_runs_as_non_root_only_when_it_names_a_user(
    kube_namespace: str,
    kube_env: Path,
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`named` (USER 1000) gets runAsNonRoot; `rootful` (no USER) does not, so it starts on a
    real cluster; both keep the runtime's seccomp profile."""
    busybox_context(tmp_path / "named", "sleep 3600", extra="USER 1000")
    busybox_context(tmp_path / "rootful", "sleep 3600")
    for name in ("named", "rootful"):
        (tmp_path / name / "nonce").write_text(uuid.uuid4().hex)
    path = write_config(
        f"version: 1\nregistry: {docker_env.registry}/kube-users\n"
        "targets: {eu: {kind: kubernetes}}\nservices:\n"
        "  named: {type: application, build: ./named}\n"
        "  rootful: {type: application, build: ./rootful}\n"
        f"environments: {{{kube_namespace}: {{target: eu}}}}\n"
    )
    code = main(["deploy", "-f", str(path), "-e", kube_namespace])
    assert code == 0, capsys.readouterr()
    named = pod_security(kube_env, kube_namespace, "named")
    assert named.run_as_non_root is True
    assert named.seccomp_profile.type == "RuntimeDefault"
    rootful = pod_security(kube_env, kube_namespace, "rootful")
    assert rootful.run_as_non_root is None
    assert rootful.seccomp_profile.type == "RuntimeDefault"
