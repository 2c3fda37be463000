"""Image pull Secrets and TLS as objects (DESIGN.md §11), checked without a cluster: the Docker
client's login for one registry read as `docker login` and the Action write it, the Secret that
holds that login only, the workloads naming it, and the Ingress's `tls:` section."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from deploy_pipeline.backends import manifests
from deploy_pipeline.backends.registry_login import (
    DOCKER_HUB,
    Login,
    docker_login,
    image_registry,
    registry_of,
)
from deploy_pipeline.model import Service, Tls


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def config(tmp_path: Path, content: object) -> dict[str, str]:
    """A DOCKER_CONFIG folder holding `content` as its config.json."""
    (tmp_path / "config.json").write_text(json.dumps(content), encoding="utf-8")
    return {"DOCKER_CONFIG": str(tmp_path)}


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("registry.example.com/acme/api@sha256:ab", "registry.example.com"),
        ("127.0.0.1:5000/acme/api:1", "127.0.0.1:5000"),
        ("localhost/api", "localhost"),
        ("nginx:1.27", DOCKER_HUB),
        ("acme/api:1", DOCKER_HUB),
        ("docker.io/library/nginx", DOCKER_HUB),
    ],
)
def test_an_images_registry_is_read_as_docker_reads_it(image: str, registry: str) -> None:
    """The first part of the name is the registry when it has a '.' or ':' or is localhost;
    otherwise the image is Docker Hub's."""
    assert image_registry(image) == registry


def test_the_pipeline_registrys_host_is_its_first_part() -> None:
    """`registry:` names a repository prefix; its registry is the host before the first '/'."""
    assert registry_of("registry.example.com/acme") == "registry.example.com"
    assert registry_of("127.0.0.1:5000") == "127.0.0.1:5000"


def test_the_login_is_read_as_docker_login_and_the_action_write_it(tmp_path: Path) -> None:
    """An `auth` entry keyed by the host (the Action's), one keyed by an https URL
    (`docker login`'s older form), username/password fields, and Docker Hub's key are found."""
    environ = config(
        tmp_path,
        {
            "auths": {
                "registry.example.com": {"auth": b64("ci:s3cret-pass:with-colon")},
                "https://ghcr.io/v1/": {"auth": b64("bot:ghp_0042")},
                "quay.io": {"username": "robot", "password": "quay-0042"},
                DOCKER_HUB: {"auth": b64("hubuser:hub-0042")},
            }
        },
    )
    found = docker_login("registry.example.com", environ)
    assert found.login == Login("registry.example.com", "ci", "s3cret-pass:with-colon")
    assert docker_login("ghcr.io", environ).login == Login("ghcr.io", "bot", "ghp_0042")
    assert docker_login("quay.io", environ).login == Login("quay.io", "robot", "quay-0042")
    assert docker_login(DOCKER_HUB, environ).login == Login(DOCKER_HUB, "hubuser", "hub-0042")
    assert "s3cret" not in repr(found)


def test_no_login_is_no_secret_and_a_credential_helper_is_said(tmp_path: Path) -> None:
    """No config file, no entry for the registry, or an entry without credentials: no login
    and nothing to say; a credential helper's login is named as not read, with no value."""
    assert docker_login("registry.example.com", {"DOCKER_CONFIG": str(tmp_path)}).login is None
    environ = config(tmp_path, {"auths": {"other.example.com": {"auth": b64("a:b")}, "x.io": {}}})
    assert docker_login("registry.example.com", environ) == docker_login("x.io", environ)
    assert docker_login("x.io", environ).login is None
    assert docker_login("x.io", environ).note == ""
    environ = config(tmp_path, {"auths": {"x.io": {}}, "credsStore": "desktop"})
    assert docker_login("x.io", environ).note == (
        "the Docker client keeps the login for x.io in the credential helper "
        "docker-credential-desktop, which deploy-pipeline does not read; log in with "
        "DOCKER_CONFIG pointing to a folder without a credential helper to hand it on"
    )


def test_the_pull_secret_holds_that_one_login_as_dockerconfigjson() -> None:
    """The Secret is of type kubernetes.io/dockerconfigjson and decodes to one `auths` entry
    with the username, password and auth, as `kubectl create secret docker-registry` writes."""
    secret = manifests.pull_secret(
        "staging", "deploy-pipeline-registry", Login("registry.example.com", "ci", "pw-0042")
    )
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["namespace"] == "staging"
    content = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert content == {
        "auths": {
            "registry.example.com": {
                "username": "ci",
                "password": "pw-0042",
                "auth": b64("ci:pw-0042"),
            }
        }
    }
    assert "pw-0042" not in json.dumps(secret["metadata"])


WEB = Service("web", "container", "apps", image="nginx:1.27", port=80, public=True)
DB = Service("db", "database", "data", image="postgres:16", port=5432)
MIGRATE = Service("migrate", "job", "jobs", image="migrate:1")
REPORT = Service("report", "job", "jobs", image="report:1", schedule="0 3 * * *")


@pytest.mark.parametrize("svc", [WEB, DB, MIGRATE, REPORT], ids=lambda s: s.type + s.name)
def test_every_workload_names_its_pull_secrets(svc: Service) -> None:
    """Deployment, StatefulSet, Job and CronJob pod templates name the pull Secrets given, and
    none when none are given (an anonymous pull)."""
    objects = manifests.service_objects("staging", svc, "img", run="r1", pull_secrets=["a", "b"])
    specs = [spec for o in objects if (spec := manifests.pod_spec(o)) is not None]
    assert len(specs) == 1
    assert specs[0]["imagePullSecrets"] == [{"name": "a"}, {"name": "b"}]
    plain = manifests.service_objects("staging", svc, "img", run="r1")
    assert all("imagePullSecrets" not in (manifests.pod_spec(o) or {}) for o in plain)


def test_tls_with_an_issuer_asks_cert_manager_for_the_services_certificate() -> None:
    """The Ingress carries cert-manager's cluster-issuer annotation and a `tls:` section for
    its host in `<service>-tls`."""
    objects = manifests.service_objects(
        "staging", WEB, "img", run="r", host="web.staging.example.com", tls=Tls(issuer="le")
    )
    ingress = objects[-1]
    assert ingress["kind"] == "Ingress"
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "le"}
    assert ingress["spec"]["tls"] == [
        {"hosts": ["web.staging.example.com"], "secretName": "web-tls"}
    ]


def test_tls_with_a_secret_serves_that_secret_without_an_annotation() -> None:
    """`tls: {secret}` puts the existing Secret in the Ingress's `tls:` and asks nothing of
    cert-manager; with no `tls:` the Ingress has no `tls:` section."""
    tls = Tls(secret="wildcard-tls")
    ingress = manifests.service_objects("s", WEB, "img", run="r", host="h.example", tls=tls)[-1]
    assert ingress["metadata"]["annotations"] == {}
    assert ingress["spec"]["tls"] == [{"hosts": ["h.example"], "secretName": "wildcard-tls"}]
    plain = manifests.service_objects("s", WEB, "img", run="r", host="h.example")[-1]
    assert "tls" not in plain["spec"]
