"""Content-addressed image builds, for every target kind that builds (docker and kubernetes).

An image's tag is a hash of everything that decides what it contains: the build context's files
after `.dockerignore`, the Dockerfile, the build args and the target stage. An image whose tag is
already in the registry (or on the engine, without a registry) is reused, never rebuilt.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from deploy_pipeline.backends.base import StepContext, StepResult
from deploy_pipeline.backends.containers import MANAGED
from deploy_pipeline.backends.engine import BuildStopped, Engine
from deploy_pipeline.config import escapes, outside_message
from deploy_pipeline.errors import Cancelled, PermanentError, StepError, StepTimeout, UsageError
from deploy_pipeline.model import BuildSpec, Service

CONTENT_LABEL = "io.deploy-pipeline.content"
LOG_TAIL = 15  # lines of a failed build's log put in the error a user reads


def content_tag(context: Path, spec: BuildSpec, files: list[str]) -> str:
    """sha256 over the context's files (path, executable bit, bytes), Dockerfile, args, target."""
    digest = hashlib.sha256()
    for name in files:
        path = context / name
        if path.is_symlink():
            digest.update(f"L {name} -> {path.readlink()}\n".encode())
        elif path.is_file():
            executable = "x" if path.stat().st_mode & 0o111 else "-"
            digest.update(f"F {name} {executable} {_file_hash(path)}\n".encode())
        elif path.is_dir():
            digest.update(f"D {name}\n".encode())
    digest.update(f"dockerfile {spec.dockerfile}\n".encode())
    dockerfile = context / spec.dockerfile
    if dockerfile.is_file() and spec.dockerfile not in files:  # a Dockerfile kept outside it
        digest.update(_file_hash(dockerfile).encode())
    for key, value in sorted(spec.args):
        digest.update(f"arg {key}={value}\n".encode())
    digest.update(f"target {spec.target or ''}\n".encode())
    return "sha-" + digest.hexdigest()[:20]


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_revision(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@dataclass(frozen=True)
class ImagePlan:
    ref: str
    content: str
    exists: bool


class Builder:
    """Builds (or reuses) a service's image; one build per content hash at a time."""

    def __init__(self, engine: Engine, root: Path, registry: str | None) -> None:
        self.engine, self.root, self.registry = engine, root, registry
        self.locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
        self.guard = threading.Lock()

    def context(self, service: Service) -> tuple[Path, BuildSpec]:
        spec = service.build
        assert spec is not None
        escaping = escapes(self.root, spec)  # checked when the file was read; the tree may move
        if escaping is not None:
            raise PermanentError(
                f"services.{service.name}.build.{escaping}: {outside_message(spec, escaping)}"
            )
        context = (self.root / spec.context).resolve()
        if not context.is_dir():
            raise UsageError(
                f"services.{service.name}.build: the folder {spec.context} does not "
                f"exist (paths are relative to the pipeline file's folder)"
            )
        if not (context / spec.dockerfile).is_file():
            raise UsageError(
                f"services.{service.name}.build: no {spec.dockerfile} in "
                f"{spec.context}; add one or set `dockerfile:`"
            )
        return context, spec

    def image(self, service: Service, *, look: bool = True) -> ImagePlan:
        """The image a build of this service would make, and (with `look`) whether it exists."""
        context, spec = self.context(service)
        content = content_tag(context, spec, self.engine.context_files(context, spec.dockerfile))
        repository = (
            f"{self.registry}/{service.name}"
            if self.registry
            else f"deploy-pipeline/{service.name}"
        )
        ref = f"{repository}:{content}"
        exists = look and (
            (self.engine.pushed(ref) or self.engine.in_registry(ref))
            if self.registry
            else self.engine.local_image(ref) is not None
        )
        return ImagePlan(ref, content, exists)

    def build(self, ctx: StepContext) -> StepResult:
        content = self.image(ctx.service, look=False).content
        with self.guard:
            lock = self.locks[content]
        with lock:  # services built from the same context build once, the others reuse it
            plan = self.image(ctx.service)
            if plan.exists:
                return StepResult(
                    status="reused",
                    artifact=plan.ref,
                    message=f"{plan.ref} already {'in the registry' if self.registry else 'built'}",
                )
            twins = self.engine.images_labelled(CONTENT_LABEL, plan.content)
            if twins:  # the same content was built for another service: name it for this one
                self.engine.tag(twins[0], plan.ref)
                if self.registry:
                    self.engine.push(plan.ref, ctx.log)
                return StepResult(
                    status="reused",
                    artifact=plan.ref,
                    message=f"{plan.ref}: same content as an image already built",
                )
            self.run_build(ctx, plan)
            if self.registry:
                ctx.log(f"pushing {plan.ref}")
                self.engine.push(plan.ref, ctx.log)
            return StepResult(artifact=plan.ref, message=f"built {plan.ref}")

    def run_build(self, ctx: StepContext, plan: ImagePlan) -> None:
        context, spec = self.context(ctx.service)
        tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)

        def line(text: str) -> None:
            tail.append(text)
            ctx.log(text)

        labels = {
            **MANAGED,
            CONTENT_LABEL: plan.content,
            "io.deploy-pipeline.service": ctx.service.name,
            "org.opencontainers.image.source": spec.context,
            "org.opencontainers.image.created": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        revision = git_revision(self.root)
        if revision:
            labels["org.opencontainers.image.revision"] = revision
        stop = threading.Event()
        watch = threading.Thread(target=_stop_when, args=(ctx, stop), daemon=True)
        watch.start()
        try:
            self.engine.build(
                context,
                spec.dockerfile,
                plan.ref,
                args=dict(spec.args),
                target=spec.target,
                labels=labels,
                on_line=line,
                stop=stop,
            )
        except BuildStopped:
            if ctx.cancel.is_set() and ctx.remaining() > 0:
                raise Cancelled(ctx.reason()) from None
            raise StepTimeout("timed out") from None
        except StepError as exc:
            last = "\n".join(tail)
            raise PermanentError(
                f"{exc}\nlast lines of the build log:\n{last}" if last else str(exc)
            ) from exc
        finally:
            stop.set()


def _stop_when(ctx: StepContext, stop: threading.Event) -> None:
    """Stop the build when the step is cancelled or runs past its deadline."""
    while not stop.is_set():
        if ctx.cancel.is_set() or ctx.remaining() <= 0:
            stop.set()
            return
        ctx.cancel.wait(min(0.2, max(ctx.remaining(), 0.01)))
