"""A Kubernetes cluster as deploy-pipeline uses it: the only module that imports `kubernetes`.

Objects are applied server-side with field manager `deploy-pipeline`, and strict field
validation (the API server refuses a field its schema does not know). API errors are converted in
`mapped()`: connection failures, 5xx, 429 and update conflicts are TransientError (retried with
backoff); other 4xx are PermanentError with the API's own message, truncated (the client's
exceptions print whole bodies and headers).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError

from deploy_pipeline.errors import PermanentError, TransientError, truncate

MANAGER = "deploy-pipeline"
# (connect, read) seconds per request: an API server that hangs delays a step, never stalls it
# for good (a paused one that comes back within the read timeout just answers late).
TIMEOUT = (5, 30)
Obj = dict[str, Any]


class ApplyConflict(PermanentError):
    """Server-side apply found fields owned by other managers; `managers` names them."""

    def __init__(self, message: str, managers: set[str]) -> None:
        super().__init__(message)
        self.managers = managers


def _status(exc: BaseException) -> int:
    return int(getattr(exc, "status", 0) or 0)


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            return truncate(str(json.loads(body).get("message", body)), 500)
        except (ValueError, AttributeError):
            return truncate(body, 500)
    return truncate(str(getattr(exc, "reason", exc)), 500)


@contextmanager
def mapped(what: str) -> Iterator[None]:
    try:
        yield
    except (k8s.ApiException, DynamicApiError) as exc:
        code, message = _status(exc), _message(exc)
        if code == 409 and "Apply failed with" in message:
            managers = set(_conflicting_managers(exc))
            raise ApplyConflict(f"{what}: {message}", managers) from exc
        if code >= 500 or code in (409, 429) or code == 0:
            raise TransientError(f"{what}: {code or ''} {message}".strip()) from exc
        raise PermanentError(f"{what}: {message}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc  # MaxRetryError wraps the real one
        text = str(reason).rsplit("): ", 1)[-1]  # drop urllib3's "HTTPSConnection(host=…)"
        raise TransientError(
            f"{what}: cannot reach the Kubernetes API: {truncate(text, 200)}"
        ) from exc


def _conflicting_managers(exc: BaseException) -> Iterator[str]:
    body = getattr(exc, "body", None)
    try:
        causes = json.loads(body or "{}").get("details", {}).get("causes", [])
    except (ValueError, TypeError):
        return
    for cause in causes:
        text = str(cause.get("message", ""))
        if 'conflict with "' in text:
            yield text.split('conflict with "', 1)[1].split('"', 1)[0]


class Cluster:
    """One kubeconfig context (KUBECONFIG honoured); a client per thread."""

    def __init__(self, context: str | None) -> None:
        self.context = context
        self.local = threading.local()
        self.lock = threading.Lock()
        with mapped(f"loading kubeconfig context {context or '(current)'}"):
            try:
                # KUBECONFIG read now: the client reads it once, when it is first imported
                files = os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
                self.api_client = k8s_config.new_client_from_config(
                    config_file=files, context=context
                )
            except k8s_config.ConfigException as exc:
                raise PermanentError(str(exc)) from exc
        with mapped("asking the API server what it serves"):
            self.dynamic = DynamicClient(self.api_client)

    def close(self) -> None:
        self.api_client.close()

    def resource(self, api_version: str, kind: str) -> Any:
        with self.lock:  # the discovery cache is not thread-safe on first use
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def apply(self, body: Obj, *, force: bool = False, manager: str = MANAGER) -> Obj:
        meta = body["metadata"]
        what = f"applying {body['kind']}/{meta['name']}"
        with mapped(what):
            result = self.resource(body["apiVersion"], body["kind"]).server_side_apply(
                body=body,
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=manager,
                force_conflicts=force,
                # a field the API's own schema does not know (a patch's typo) is refused, not
                # dropped with a warning no one reads
                query_params=[("fieldValidation", "Strict")],
                _request_timeout=TIMEOUT,
            )
            return dict(result.to_dict())

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Obj | None:
        try:
            with mapped(f"reading {kind}/{name}"):
                return dict(
                    self.resource(api_version, kind)
                    .get(name=name, namespace=namespace, _request_timeout=TIMEOUT)
                    .to_dict()
                )
        except PermanentError as exc:
            if _status(exc.__cause__ or exc) == 404:
                return None
            raise

    def watch(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        done: Callable[[Obj | None], bool],
        seconds: int,
    ) -> Obj | None:
        """The object as soon as `done` holds for it, else as it is after `seconds`: read once,
        then followed by a watch (as `kubectl rollout status` does): no change waits for a poll."""
        resource, selector = self.resource(api_version, kind), f"metadata.name={name}"
        with mapped(f"watching {kind}/{name}"):
            found = resource.get(
                namespace=namespace, field_selector=selector, _request_timeout=TIMEOUT
            )
            obj: Obj | None = dict(found.items[0].to_dict()) if found.items else None
            if done(obj):
                return obj
            events = k8s_watch.Watch().stream(
                resource.get,
                namespace=namespace,
                field_selector=selector,
                resource_version=found.metadata.resourceVersion,
                serialize=False,
                timeout_seconds=seconds,
                _request_timeout=(TIMEOUT[0], seconds + TIMEOUT[0]),
            )
            try:
                with closing(events):
                    for event in events:
                        obj = None if event["type"] == "DELETED" else dict(event["object"])
                        if done(obj):
                            return obj
            except k8s.ApiException as exc:
                if exc.status != 410:  # 410 Gone: the version expired; the caller reads again
                    raise
        return obj

    def objects(
        self, api_version: str, kind: str, namespace: str | None, selector: Mapping[str, str]
    ) -> list[Obj]:
        query = ",".join(f"{k}={v}" for k, v in selector.items())
        with mapped(f"listing {kind}"):
            found = self.resource(api_version, kind).get(
                namespace=namespace, label_selector=query, _request_timeout=TIMEOUT
            )
            return [dict(item.to_dict()) for item in found.items]

    def patch(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: Obj
    ) -> None:
        with mapped(f"patching {kind}/{name}"):
            self.resource(api_version, kind).patch(
                body=patch,
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                field_manager=MANAGER,
                _request_timeout=TIMEOUT,
            )

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        """Delete one object (its dependents in the background); False if it was not there."""
        try:
            with mapped(f"deleting {kind}/{name}"):
                self.resource(api_version, kind).delete(
                    name=name,
                    namespace=namespace,
                    body={"propagationPolicy": "Background"},
                    _request_timeout=TIMEOUT,
                )
                return True
        except PermanentError as exc:
            if _status(exc.__cause__ or exc) == 404:
                return False
            raise

    def pod_log(
        self, name: str, namespace: str, *, tail: int | None, follow: bool, stop: threading.Event
    ) -> Iterator[str]:
        """A pod's output line by line (its one container's): the last `tail` lines (all when
        None), then, with `follow`, what it writes until `stop` is set. The API server reads it
        from the pod's node; whatever it answers instead is mapped as every other answer is."""
        core = k8s.CoreV1Api(self.api_client)
        with mapped(f"reading the log of pod {name}"):
            reply: Any = core.read_namespaced_pod_log(
                name,
                namespace,
                tail_lines=tail,
                follow=follow,
                _preload_content=False,
                _request_timeout=(TIMEOUT[0], 86_400) if follow else TIMEOUT,  # a day: none
            )
        if follow:
            threading.Thread(target=_shut_on, args=(stop, reply), daemon=True).start()
        try:
            with mapped(f"reading the log of pod {name}"):
                rest = b""
                for chunk in reply.stream(64 * 1024):
                    *complete, rest = (rest + chunk).split(b"\n")
                    for line in complete:
                        yield line.decode("utf-8", "replace").rstrip("\r")
                if rest:
                    yield rest.decode("utf-8", "replace").rstrip("\r")
        except Exception:
            if stop.is_set():  # shut on purpose: whatever the read raised is the end
                return
            raise
        finally:
            reply.release_conn()

    def warnings(self, namespace: str, names: set[str]) -> list[str]:
        """Recent Warning events about the named objects (and their pods), without repeats."""
        with mapped("reading events"):
            found = self.resource("v1", "Event").get(
                namespace=namespace, field_selector="type=Warning", _request_timeout=TIMEOUT
            )
        seen: dict[str, None] = {}
        for event in found.items:
            involved = str(event.involvedObject.name or "")
            if any(involved == n or involved.startswith(f"{n}-") for n in names):
                seen.setdefault(f"{event.reason}: {event.message}".strip(), None)
        return list(seen)[-5:]


def _shut_on(stop: threading.Event, reply: Any) -> None:
    """Shut a followed log's connection once `stop` is set: that wakes its blocked read."""
    stop.wait()
    try:
        reply.shutdown()
    except Exception:  # closed already: ended either way
        return
