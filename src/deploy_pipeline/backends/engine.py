"""The Docker engine as deploy-pipeline uses it: the only module that imports the `docker` SDK.

Every call goes through `mapped()`, which turns SDK and HTTP errors into TransientError (worth a
retry: connection refused, 5xx, 409) or PermanentError (a 4xx, a missing image), with the
engine's message truncated. The rest of the project sees plain dataclasses (`containers`), never
SDK objects.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import docker
import docker.errors
import requests
import urllib3
from docker.models.images import Image
from docker.utils import build as build_utils

from deploy_pipeline.backends.containers import (
    MANAGED,
    Container,
    ContainerSpec,
    container_of,
    label_filters,
)
from deploy_pipeline.errors import PermanentError, StepError, TransientError, truncate


def _repository(ref: str) -> str:
    """`registry:5000/a/api` of `registry:5000/a/api:tag` (a port is not a tag)."""
    name, _, tag = ref.rpartition(":")
    return name if name and "/" not in tag else ref


class BuildStopped(PermanentError):
    """The build was cut short on purpose (timeout or cancel); the caller says which."""


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Convert the SDK's errors at the boundary, keeping the original as __cause__."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise PermanentError(f"{what}: {_explain(exc)}") from exc
    except docker.errors.APIError as exc:
        code = exc.status_code or 0
        error = TransientError if code >= 500 or code in (409, 429) else PermanentError
        raise error(f"{what}: {_explain(exc)}") from exc
    except (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
    ) as exc:
        raise TransientError(
            f"{what}: cannot reach the Docker engine: {truncate(str(exc), 300)}"
        ) from exc
    except docker.errors.DockerException as exc:
        raise PermanentError(f"{what}: {truncate(str(exc), 500)}") from exc


def _explain(exc: docker.errors.APIError) -> str:
    text = exc.explanation if isinstance(exc.explanation, str) else str(exc)
    return truncate(text.strip(), 500)


class Engine:
    """One Docker engine (DOCKER_HOST, or the default socket); a client per thread."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.network_lock = threading.Lock()
        self.clients: list[docker.DockerClient] = []
        self.clients_lock = threading.Lock()
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
            # (the SDK would leak the socket of a failed connect: don't let it try)
            raise TransientError(f"no Docker engine socket at {host}")
        # A fixed API version: an auto-detecting client asks the engine in its constructor and,
        # when none answers, leaks its socket before we could close it.
        probe = docker.from_env(version="1.24", timeout=10)
        try:
            with mapped("connecting to the Docker engine"):
                probe.ping()
        finally:
            probe.close()

    @property
    def client(self) -> docker.DockerClient:
        client: docker.DockerClient | None = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = docker.from_env(timeout=120)
            with self.clients_lock:
                self.clients.append(client)
        return client

    def close(self) -> None:
        """Close every thread's connection to the engine."""
        with self.clients_lock:
            for client in self.clients:
                client.close()
            self.clients.clear()
        self.local = threading.local()

    # --- images --------------------------------------------------------------------------------

    @staticmethod
    def context_files(context: Path, dockerfile: str) -> list[str]:
        """The files Docker sends as the build context: everything but `.dockerignore`'s."""
        ignore = context / ".dockerignore"
        patterns: list[str] = []
        if ignore.is_symlink() and not ignore.resolve().is_relative_to(context.resolve()):
            # read on this machine: a link out of the context could be any file (or /dev/zero)
            raise PermanentError(
                "the build context's .dockerignore links outside the context; commit it as a file"
            )
        if ignore.is_file():
            lines = ignore.read_text(encoding="utf-8").splitlines()
            patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
        return sorted(build_utils.exclude_paths(str(context), patterns, dockerfile=dockerfile))

    def build(
        self,
        context: Path,
        dockerfile: str,
        tag: str,
        *,
        args: Mapping[str, str],
        target: str | None,
        labels: Mapping[str, str],
        on_line: Callable[[str], None],
        stop: threading.Event,
    ) -> str:
        """Build and tag an image, streaming its log; `stop` aborts the build on the engine."""
        # Its own connection, so that a stop cuts only this build; a day is "no timeout".
        client = docker.from_env(timeout=86_400)
        replies: list[requests.Response] = []
        client.api.hooks["response"].append(lambda reply, *args, **kwargs: replies.append(reply))

        def cut_on_stop() -> None:
            """Shut the build's socket: that wakes the blocked read here, and the engine
            abandons a build whose client has gone (closing the session would not)."""
            stop.wait()
            for reply in replies:
                connection = getattr(reply.raw, "connection", None)
                sock = getattr(connection, "sock", None)
                if sock is not None:
                    with suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=cut_on_stop, daemon=True).start()
        image_id = ""
        scratch = tempfile.TemporaryDirectory(prefix="deploy-pipeline-")
        try:
            if target is None:
                # The classic builder makes one step per `labels=` entry (a second each on vfs):
                # one LABEL line appended to a copy of the Dockerfile sets them all at once. The
                # SDK sends a Dockerfile kept outside the context along with the context.
                text = (context / dockerfile).read_text(encoding="utf-8")
                pairs = " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in labels.items())
                dockerfile = str(Path(scratch.name) / "Dockerfile")
                Path(dockerfile).write_text(f"{text.rstrip()}\nLABEL {pairs}\n", encoding="utf-8")
                labels = {}
            with mapped(f"building {tag}"):
                stream = client.api.build(
                    path=str(context),
                    dockerfile=dockerfile,
                    tag=tag,
                    buildargs=dict(args),
                    target=target,
                    labels=dict(labels),
                    rm=True,
                    forcerm=True,
                    decode=True,
                )
                for chunk in stream:
                    if "error" in chunk:
                        raise PermanentError(str(chunk["error"]).strip())
                    for line in str(chunk.get("stream", "")).splitlines():
                        if line.strip():
                            on_line(line.rstrip())
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and "ID" in aux:
                        image_id = str(aux["ID"])
        except StepError:
            if stop.is_set():
                raise BuildStopped("the build was stopped") from None
            raise
        finally:
            stop.set()  # release the watcher
            for reply in replies:  # a streamed reply holds its connection outside the pool
                reply.close()
            client.close()
            scratch.cleanup()
        if not image_id:
            with mapped(f"inspecting {tag}"):
                image_id = str(self.client.images.get(tag).id)
        return image_id

    def _image(self, ref: str) -> Image | None:
        try:
            with mapped(f"inspecting {ref}"):
                return self.client.images.get(ref)
        except PermanentError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise

    def local_image(self, ref: str) -> str | None:
        image = self._image(ref)
        return str(image.id) if image is not None else None

    def image_user(self, ref: str) -> str | None:
        """The user a local image runs as (its `USER`, "" for root by default); None when this
        engine does not have the image."""
        image = self._image(ref)
        if image is None:
            return None
        return str((image.attrs.get("Config") or {}).get("User") or "")

    def repo_digest(self, ref: str) -> str | None:
        """`REPO@sha256:…` of a local image that was pushed to (or pulled from) a registry as
        `ref`'s repository; None for an image only this engine has."""
        image = self._image(ref)
        digests = (image.attrs.get("RepoDigests") or []) if image is not None else []
        repository = ref.rpartition("@")[0] if "@" in ref else _repository(ref)
        return next((str(d) for d in digests if str(d).startswith(f"{repository}@")), None)

    def registry_digest(self, ref: str) -> str | None:
        """`REPO@sha256:…` of `ref` as its registry has it (this engine may not have the image);
        None when the registry does not."""
        try:
            with mapped(f"asking the registry for {ref}"):
                data = self.client.images.get_registry_data(ref)
        except PermanentError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound | docker.errors.APIError):
                return None
            raise
        return f"{_repository(ref)}@{data.id}" if data.id else None

    def pushed(self, ref: str) -> bool:
        """Whether this engine pushed (or pulled) `ref` to (from) its registry: the local image
        then carries a digest of that repository, and the registry need not be asked."""
        image = self._image(ref)
        digests = (image.attrs.get("RepoDigests") or []) if image is not None else []
        repository = ref.rpartition(":")[0]
        return any(str(d).startswith(f"{repository}@") for d in digests)

    def images_labelled(self, key: str, value: str) -> list[str]:
        with mapped("listing images"):
            return [str(i.id) for i in self.client.images.list(filters={"label": f"{key}={value}"})]

    def in_registry(self, ref: str) -> bool:
        """Whether a registry already has `ref` (the engine asks it; loopback needs no TLS)."""
        try:
            with mapped(f"asking the registry for {ref}"):
                self.client.images.get_registry_data(ref)
                return True
        except PermanentError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound | docker.errors.APIError):
                return False
            raise

    def tag(self, image_id: str, ref: str) -> None:
        repository, _, tag = ref.rpartition(":")
        with mapped(f"tagging {ref}"):
            self.client.api.tag(image_id, repository, tag)

    def untag(self, ref: str) -> None:
        """Remove one name of an image (the image stays while it has another)."""
        with mapped(f"untagging {ref}"), suppress(docker.errors.NotFound):
            self.client.api.remove_image(ref, noprune=True)

    def push(self, ref: str, on_line: Callable[[str], None]) -> None:
        repository, _, tag = ref.rpartition(":")
        with mapped(f"pushing {ref}"):
            for chunk in self.client.api.push(repository, tag, stream=True, decode=True):
                if "error" in chunk:
                    raise TransientError(f"pushing {ref}: {truncate(str(chunk['error']), 500)}")
                status = chunk.get("status")
                if status and "id" not in chunk:
                    on_line(str(status))

    def ensure_image(self, ref: str, on_line: Callable[[str], None]) -> None:
        """Pull a prebuilt image unless the engine already has it."""
        if self.local_image(ref) is not None:
            return
        on_line(f"pulling {ref}")
        try:
            with mapped(f"pulling {ref}"):
                self.client.images.pull(ref)
        except TransientError as exc:  # pulls fail for good far more often than they flake
            raise PermanentError(
                f"{exc}; is the image name right, and can the engine reach its registry?"
            ) from exc

    # --- networks and volumes ------------------------------------------------------------------

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> None:
        # Services of a stage deploy at once; engines happily make two networks of one name.
        with self.network_lock, mapped(f"creating network {name}"):
            if not [n for n in self.client.networks.list(names=[name]) if n.name == name]:
                self.client.networks.create(
                    name, driver="bridge", labels={**labels, **MANAGED}, check_duplicate=True
                )

    def remove_network(self, name: str) -> None:
        with mapped(f"removing network {name}"):
            for network in self.client.networks.list(names=[name]):
                if network.name == name:  # the engine matches names by substring
                    network.remove()

    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        with mapped("listing volumes"):
            return [
                str(v.name)
                for v in self.client.volumes.list(filters={"label": label_filters(labels)})
            ]

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        with mapped(f"creating volume {name}"):
            try:
                self.client.volumes.get(name)
            except docker.errors.NotFound:
                self.client.volumes.create(name, labels={**labels, **MANAGED})

    def remove_volume(self, name: str) -> None:
        with mapped(f"removing volume {name}"), suppress(docker.errors.NotFound):
            self.client.volumes.get(name).remove(force=True)

    # --- containers ----------------------------------------------------------------------------

    def containers(self, labels: Mapping[str, str]) -> list[Container]:
        with mapped("listing containers"):
            found = []
            for summary in self.client.api.containers(
                all=True, filters={"label": label_filters(labels)}
            ):
                with suppress(docker.errors.NotFound):  # removed meanwhile by a parallel step
                    found.append(container_of(self.client.api.inspect_container(summary["Id"])))
            return sorted(found, key=lambda c: c.name)

    def inspect(self, container_id: str) -> Container:
        with mapped(f"inspecting container {container_id[:12]}"):
            return container_of(self.client.api.inspect_container(container_id))

    def run(self, spec: ContainerSpec) -> Container:
        with mapped(f"starting {spec.name}"):
            networking = None
            if spec.network is not None:
                networking = self.client.api.create_networking_config(
                    # the stubs say one EndpointConfig; the SDK takes a network → endpoint mapping
                    {spec.network: self.client.api.create_endpoint_config(aliases=[spec.alias])}  # type: ignore[arg-type]
                )
            host = self.client.api.create_host_config(
                port_bindings={spec.port: ("127.0.0.1", None)} if spec.port else None,
                binds={name: {"bind": path, "mode": "rw"} for name, path in spec.volumes.items()},
                restart_policy={"Name": "unless-stopped"} if spec.restart else None,
                init=True,  # a PID 1 that forwards SIGTERM: `stop` is prompt, not a 10 s kill
                mem_limit=spec.memory,
                nano_cpus=spec.nano_cpus,
            )
            created = self.client.api.create_container(
                spec.image,
                command=list(spec.command) if spec.command is not None else None,
                name=spec.name,
                environment=dict(spec.env),
                labels={**spec.labels, **MANAGED},
                ports=[spec.port] if spec.port else None,
                host_config=host,
                networking_config=networking,
            )
            self.client.api.start(created["Id"])
            return container_of(self.client.api.inspect_container(created["Id"]))

    def logs(self, container_id: str, tail: int = 20, since: float | None = None) -> str:
        """The last `tail` lines the container wrote (since a UNIX time, when given)."""
        with mapped(f"reading the logs of {container_id[:12]}"):
            data = self.client.api.logs(
                container_id,
                tail=tail,
                stdout=True,
                stderr=True,
                since=since,
            )
            return bytes(data).decode("utf-8", "replace").rstrip()

    def log_lines(
        self, container_id: str, *, tail: int | None, follow: bool, stop: threading.Event
    ) -> Iterator[str]:
        """The container's output line by line, stdout and stderr as it wrote them: its last
        `tail` lines (all when None), then, with `follow`, what it writes until it exits or
        `stop` is set. Read on a connection of its own with no read timeout when following: a
        quiet service is not an error, and closing the stream on `stop` ends only this one."""
        client = docker.from_env(timeout=86_400 if follow else 120)
        try:
            with mapped(f"reading the logs of {container_id[:12]}"):
                stream = client.api.logs(
                    container_id,
                    stdout=True,
                    stderr=True,
                    stream=True,
                    follow=follow,
                    tail="all" if tail is None else tail,
                )
                if follow:
                    threading.Thread(target=_close_on, args=(stop, stream), daemon=True).start()
                rest = b""
                for chunk in stream:
                    *complete, rest = (rest + chunk).split(b"\n")
                    for line in complete:
                        yield line.decode("utf-8", "replace").rstrip("\r")
                if rest:
                    yield rest.decode("utf-8", "replace").rstrip("\r")
        except Exception:
            if stop.is_set():  # the stream was closed on purpose: whatever it raised is the end
                return
            raise
        finally:
            client.close()

    def wait(self, container_id: str, timeout: float) -> int | None:
        """The exit code once the container exits, or None if it still runs after `timeout`."""
        try:
            with mapped(f"waiting for {container_id[:12]}"):
                result = self.client.api.wait(container_id, timeout=max(int(timeout), 1))
                return int(result.get("StatusCode", -1))
        except TransientError as exc:
            if isinstance(exc.__cause__, requests.ConnectionError | requests.Timeout):
                return None  # the read timed out: still running
            raise

    def start(self, container_id: str) -> None:
        with mapped(f"starting {container_id[:12]}"):
            self.client.api.start(container_id)

    def restart(self, container_id: str) -> None:
        with mapped(f"restarting {container_id[:12]}"):
            self.client.api.restart(container_id, timeout=10)

    def stop(self, container_id: str) -> None:
        with mapped(f"stopping {container_id[:12]}"):
            self.client.api.stop(container_id, timeout=10)

    def remove(self, container_id: str) -> None:
        with mapped(f"removing {container_id[:12]}"), suppress(docker.errors.NotFound):
            self.client.api.remove_container(container_id, force=True, v=False)


def _close_on(stop: threading.Event, stream: object) -> None:
    """Close a followed log stream once `stop` is set: that wakes its blocked read."""
    stop.wait()
    close = getattr(stream, "close", None)
    if close is not None:
        with suppress(Exception):  # closed already, or its socket gone: ended either way
            close()
