"""`kubernetes.patches` (DESIGN.md §11) as the file is read: every bad patch a located config error
saying what is right, good ones kept on the service, replaced per environment (§8); and the
strategic merge and JSON patches applied to the objects made for the service, without a cluster."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_pipeline.backends import manifests
from deploy_pipeline.backends.patches import apply_patches
from deploy_pipeline.config import load_config
from deploy_pipeline.errors import ConfigErrors, PermanentError
from deploy_pipeline.model import Patch, Service
from deploy_pipeline.plan import in_environment

WriteConfig = Callable[..., Path]

HEAD = """\
version: 1
targets:
  eu: {kind: kubernetes, domain: "{service}.{environment}.example.test"}
services:
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_config(path)
    return [str(error) for error in caught.value.errors]


def test_patches_are_kept_on_the_service_and_replaced_per_environment(
    write_config: WriteConfig,
) -> None:
    """A mapping is a strategic merge patch, a list a JSON patch; an environment's
    `services.NAME.kubernetes.patches` replaces the service's list (an empty one too), and a
    `kubernetes:` without `patches:` keeps it."""
    path = write_config(
        HEAD
        + """\
  api:
    type: container
    image: api:1
    port: 8000
    kubernetes:
      patches:
        - {kind: Deployment, patch: {spec: {template: {spec: {priorityClassName: high}}}}}
        - kind: Service
          patch: [{op: replace, path: /spec/type, value: NodePort}]
environments:
  staging: {target: eu, services: {api: {kubernetes: {}}}}
  preview: {target: eu, services: {api: {kubernetes: {patches: []}}}}
  production:
    target: eu
    services:
      api: {kubernetes: {patches: [{kind: Deployment, patch: {spec: {paused: true}}}]}}
"""
    )
    pipeline = load_config(path)
    api = pipeline.services["api"]
    assert [(p.kind, p.is_json_patch, p.origin) for p in api.patches] == [
        ("Deployment", False, "services.api.kubernetes.patches[0]"),
        ("Service", True, "services.api.kubernetes.patches[1]"),
    ]
    assert api.patches[1].value == [{"op": "replace", "path": "/spec/type", "value": "NodePort"}]
    staging = in_environment(pipeline.environments["staging"], api)
    assert staging.patches == api.patches
    assert in_environment(pipeline.environments["preview"], api).patches == ()
    production = in_environment(pipeline.environments["production"], api)
    assert [(p.value, p.origin) for p in production.patches] == [
        (
            {"spec": {"paused": True}},
            "environments.production.services.api.kubernetes.patches[0]",
        )
    ]


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            "{type: container, image: a, kubernetes: {patches: [{kind: StatefulSet, patch: {}}]}}",
            "5: services.api.kubernetes.patches[0].kind: a patch applies to an object the "
            "kubernetes target makes for the service, and 'api' makes Deployment (and with "
            "autoscale: or several replicas, HorizontalPodAutoscaler or PodDisruptionBudget); got "
            "'StatefulSet'",
        ),
        (
            "{type: database, image: pg, kubernetes: {patches: [{kind: Deploymnet, patch: {}}]}}",
            "5: services.api.kubernetes.patches[0].kind: a patch applies to an object the "
            "kubernetes target makes for the service, and 'api' makes StatefulSet, Service; got "
            "'Deploymnet' ('Deploymnet' is no such kind)",
        ),
        (
            "{type: job, image: j:1, kubernetes: {patches: [{kind: CronJob, patch: {}}]}}",
            "5: services.api.kubernetes.patches[0].kind: a patch applies to an object the "
            "kubernetes target makes for the service, and 'api' makes Job; got 'CronJob'",
        ),
        (
            "{type: container, image: a:1, kubernetes: {patches: [{kind: Deployment, patch: 3}]}}",
            "5: services.api.kubernetes.patches[0].patch: expected a mapping (a strategic merge "
            "patch, like kubectl patch's) or a list of JSON patch operations ({op: replace, "
            "path: /spec/replicas, value: 3}), got 3; for example {kind: Deployment, patch: "
            "{spec: {template: {spec: {priorityClassName: high}}}}}",
        ),
        (
            "{type: container, image: a:1, kubernetes: {patches: [{kind: Deployment}]}}",
            "5: services.api.kubernetes.patches[0].patch: required, but missing",
        ),
        (
            "{type: container, image: a:1, kubernetes: {patchs: []}}",
            "5: services.api.kubernetes.patchs: unknown key 'patchs' (did you mean 'patches'?)",
        ),
    ],
)
def test_a_patch_naming_the_wrong_object_is_a_config_error(
    write_config: WriteConfig, service: str, expected: str
) -> None:
    """The kind must be one the service's type makes, and the patch a mapping or a list."""
    path = write_config(HEAD + f"  api: {service}\n")
    assert problems(path) == [f"{path}:{expected}"]


def test_bad_patches_are_config_errors_at_their_own_lines(write_config: WriteConfig) -> None:
    """Each bad directive, operation, pointer and owned field is reported at its own line with
    its key path and what would be right, all in one pass."""
    path = write_config(
        HEAD
        + """\
  api:
    type: container
    image: api:1
    kubernetes:
      patches:
        - kind: Deployment
          patch:
            metadata: {name: other}
            spec:
              template:
                $patch: remove
                spec:
                  $retainKeys: [containers]
        - kind: Deployment
          patch:
            - {op: replace, path: /spec/replicas, value: 3}
            - {op: rename, path: /spec/replicas}
            - {op: add, path: spec/paused, value: true}
            - {op: remove, path: /spec/paused, value: true}
            - {op: move, path: /spec/x}
            - {op: replace, path: /metadata/namespace, value: elsewhere}
            - [not, an, operation]
"""
    )
    name = str(path)
    assert problems(path) == [
        f"{name}:12: services.api.kubernetes.patches[0].patch.metadata.name: metadata.name is set "
        "by deploy-pipeline, which finds its objects by it; patch other fields",
        f"{name}:15: services.api.kubernetes.patches[0].patch.spec.template['$patch']: expected "
        "one of merge, replace, delete (the strategic merge directive), got 'remove'",
        f"{name}:17: services.api.kubernetes.patches[0].patch.spec.template.spec['$retainKeys']: "
        "the directive '$retainKeys' is not supported; `$patch: replace|delete` is, and a JSON "
        "patch (a list of operations) reaches anything else",
        f"{name}:21: services.api.kubernetes.patches[1].patch[1].op: expected `op:` one of add, "
        "remove, replace, move, copy, test, got 'rename'",
        f"{name}:22: services.api.kubernetes.patches[1].patch[2].path: expected a JSON pointer "
        "into the object, like /spec/replicas or /spec/template/spec/containers/0/env/- ('~1' "
        "for a '/' in a key, '~0' for '~'), got 'spec/paused'",
        f"{name}:23: services.api.kubernetes.patches[1].patch[3].value: a remove operation takes "
        "`path:`, not `value:`",
        f"{name}:24: services.api.kubernetes.patches[1].patch[4]: a move operation needs `from:`",
        f"{name}:25: services.api.kubernetes.patches[1].patch[5].path: metadata.namespace is set "
        "by deploy-pipeline, which finds its objects by it; patch other fields (under it, for "
        "metadata: /metadata/labels/…)",
        f"{name}:26: services.api.kubernetes.patches[1].patch[6]: expected a JSON patch "
        "operation like {op: replace, path: /spec/replicas, value: 3}, got a list",
    ]


def test_an_environment_s_patches_are_checked_against_its_service(
    write_config: WriteConfig,
) -> None:
    """A per-environment patch list is checked like the service's own, at its own line."""
    path = write_config(
        HEAD
        + """\
  db: {type: database, image: pg:16}
environments:
  production:
    target: eu
    services:
      db:
        kubernetes:
          patches: [{kind: Deployment, patch: {spec: {paused: true}}}]
"""
    )
    assert problems(path) == [
        f"{path}:12: environments.production.services.db.kubernetes.patches[0].kind: a patch "
        "applies to an object the kubernetes target makes for the service, and 'db' makes "
        "StatefulSet, Service; got 'Deployment'"
    ]


# --- applied to the objects, without a cluster -------------------------------------------------


def patched(svc: Service, *patches: object) -> list[manifests.Manifest]:
    svc = Service(
        **{
            **svc.__dict__,
            "patches": tuple(
                Patch(kind, None, json.dumps(p), f"services.{svc.name}.kubernetes.patches[{i}]")
                for i, (kind, p) in enumerate(patches)  # type: ignore[misc]
            ),
        }
    )
    objects = manifests.service_objects("staging", svc, "api:1", run="run1", host="api.example")
    return apply_patches(objects, svc)


API = Service(
    "api",
    "container",
    "apps",
    image="api:1",
    port=8000,
    env=(("LOG_LEVEL", "info"), ("MODE", "fast")),
    public=True,
)


def test_a_strategic_merge_patch_merges_lists_by_their_keys() -> None:
    """Containers by name, env by name, ports by containerPort: a patch changes one item and
    adds another, keeping the rest; `$patch: delete` removes an item; null removes a key."""
    deployment = patched(
        API,
        (
            "Deployment",
            {
                "metadata": {"annotations": {"team": "shop"}},
                "spec": {
                    "template": {
                        "spec": {
                            "priorityClassName": "high",
                            "containers": [
                                {
                                    "name": "api",
                                    "env": [
                                        {"name": "LOG_LEVEL", "value": "debug"},
                                        {"name": "MODE", "$patch": "delete"},
                                        {"name": "EXTRA", "value": "1"},
                                    ],
                                    "ports": [{"containerPort": 9090, "name": "metrics"}],
                                },
                                {"name": "sidecar", "image": "proxy:2"},
                            ],
                        }
                    },
                    "replicas": None,
                },
            },
        ),
    )[0]
    spec = deployment["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == "high"
    api, sidecar = spec["containers"]
    assert api["image"] == "api:1"
    assert api["env"] == [
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "EXTRA", "value": "1"},
    ]
    assert api["ports"] == [
        {"name": "main", "containerPort": 8000},
        {"containerPort": 9090, "name": "metrics"},
    ]
    assert sidecar == {"name": "sidecar", "image": "proxy:2"}
    assert "replicas" not in deployment["spec"]
    assert deployment["metadata"]["annotations"]["team"] == "shop"
    assert deployment["metadata"]["annotations"]["deploy-pipeline.io/image"] == "api:1"


def test_replace_directives_and_lists_without_a_merge_key_replace() -> None:
    """`$patch: replace` replaces a mapping, a `{$patch: replace}` item replaces its list, and a
    list with no merge key (an Ingress's rules, a command) is replaced whole."""
    deployment, _, ingress = patched(
        API,
        ("Deployment", {"spec": {"selector": {"$patch": "replace", "matchLabels": {"a": "b"}}}}),
        (
            "Deployment",
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]
                        }
                    }
                }
            },
        ),
        ("Ingress", {"spec": {"rules": [{"host": "shop.example"}]}}),
    )
    assert deployment["spec"]["selector"] == {"matchLabels": {"a": "b"}}
    assert deployment["spec"]["template"]["spec"]["containers"] == [{"name": "only", "image": "x"}]
    assert ingress["spec"]["rules"] == [{"host": "shop.example"}]


def test_a_json_patch_changes_the_object() -> None:
    """Operations apply in order at their JSON pointers ('-' appends)."""
    deployment = patched(
        API,
        (
            "Deployment",
            [
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {
                    "op": "add",
                    "path": "/spec/template/spec/containers/0/env/-",
                    "value": {"name": "EXTRA", "value": "1"},
                },
                {"op": "remove", "path": "/spec/template/spec/containers/0/ports"},
            ],
        ),
    )[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert container["env"][-1] == {"name": "EXTRA", "value": "1"}
    assert "ports" not in container


def test_a_patch_that_does_not_fit_its_object_names_the_service_kind_and_patch() -> None:
    """A JSON patch's path that is not in the object, an item with no merge key, or a kind the
    service does not make here is a step failure a user can act on."""
    with pytest.raises(PermanentError) as caught:
        patched(API, ("Deployment", [{"op": "remove", "path": "/spec/template/spec/nodeName"}]))
    assert str(caught.value) == (
        "api: services.api.kubernetes.patches[0] (a JSON patch on Deployment api) does not "
        "apply: can't remove a non-existent object 'nodeName'; `deploy-pipeline plan -e ENV "
        "--manifests` shows the objects as they are made"
    )
    with pytest.raises(PermanentError) as caught:
        patched(
            API,
            ("Deployment", {}),
            ("Deployment", {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
        )
    assert str(caught.value) == (
        "api: services.api.kubernetes.patches[1] (a strategic merge patch on Deployment api) "
        "does not apply: each item of containers is matched by its name, and {'image': 'x'} "
        "has none; `deploy-pipeline plan -e ENV --manifests` shows the objects as they are made"
    )
    with pytest.raises(PermanentError) as caught:
        patched(API, ("HorizontalPodAutoscaler", {"spec": {"minReplicas": 2}}))
    assert str(caught.value) == (
        "api: services.api.kubernetes.patches[0] names a HorizontalPodAutoscaler, but the "
        "kubernetes target makes none for api here (it makes Deployment api, Service api, "
        "Ingress api)"
    )


def test_the_merge_keys_reach_every_workload_s_pod_and_a_service_s_ports() -> None:
    """A CronJob's containers (under its job template) merge by name, a database's volume mounts
    by mountPath, a Service's ports by port; `$patch: delete` removes a mapping."""
    report = Service("report", "job", "jobs", image="r:1", schedule="0 3 * * *")
    (cronjob,) = patched(
        report,
        (
            "CronJob",
            {
                "spec": {
                    "jobTemplate": {
                        "spec": {
                            "template": {
                                "spec": {"containers": [{"name": "report", "args": ["--all"]}]}
                            }
                        }
                    }
                }
            },
        ),
    )
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container == {"name": "report", "image": "api:1", "args": ["--all"]}
    db = Service("db", "database", "data", image="postgres:16", port=5432)
    service, statefulset = patched(
        db,
        ("Service", {"spec": {"ports": [{"port": 5432, "name": "pg"}, {"port": 9187}]}}),
        (
            "StatefulSet",
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "db",
                                    "volumeMounts": [
                                        {"mountPath": "/var/lib/postgresql/data", "subPath": "pg"}
                                    ],
                                }
                            ]
                        }
                    },
                    "selector": {"$patch": "delete"},
                }
            },
        ),
    )
    assert service["spec"]["ports"] == [
        {"name": "pg", "port": 5432, "targetPort": 5432},
        {"port": 9187},
    ]
    (mount,) = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert mount == {"name": "data", "mountPath": "/var/lib/postgresql/data", "subPath": "pg"}
    assert "selector" not in statefulset["spec"]
