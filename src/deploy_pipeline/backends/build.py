"""Content-addressed image builds, for every target kind that builds (docker and kubernetes).

An image's tag is a hash of everything that decides what it contains: the build context's files
after `.dockerignore`, the Dockerfile, the build args and the target stage. An image whose tag is
already in the registry (or on the engine, without a registry) is reused, never rebuilt.

A service with `test:` (DESIGN §9) has its test's hash in its tag too, and its image gets that
name only once the test passed in a fresh container of it: the build leaves it unpushed (or, with
no registry, under an `-untested` name), and the test step pushes (or names) it. So an image found
under its name has passed that test, and is reused with its test ended `reused`.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import secrets
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from deploy_pipeline.backends.base import StepContext, StepResult
from deploy_pipeline.backends.containers import MANAGED, ContainerSpec
from deploy_pipeline.backends.engine import BuildStopped, Engine
from deploy_pipeline.config import escapes, outside_message
from deploy_pipeline.errors import Cancelled, PermanentError, StepError, StepTimeout, UsageError
from deploy_pipeline.model import BuildSpec, Service

CONTENT_LABEL = "io.deploy-pipeline.content"
TEST_LABEL = "io.deploy-pipeline.test"  # a test's container, by service
UNTESTED = "-untested"  # without a registry: a tested service's image until its test passes
LOG_TAIL = 15  # lines of a failed build's log put in the error a user reads
TEST_TAIL = 10  # lines of a failed test's output that end the error a user reads
TEST_TAIL_CHARS = 1200  # at most, so that the event's message (2000 at most) keeps its end


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


def build_context(root: Path, service: Service) -> tuple[Path, BuildSpec]:
    """A built service's context folder (inside `root`, the repository) and its build."""
    spec = service.build
    assert spec is not None
    escaping = escapes(root, spec)  # checked when the file was read; the tree may move
    if escaping is not None:
        raise PermanentError(
            f"services.{service.name}.build.{escaping}: {outside_message(spec, escaping)}"
        )
    context = (root / spec.context).resolve()
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


def image_name(root: Path, registry: str | None, service: Service) -> tuple[str, str]:
    """The image a build of `service` makes, named by its content (no engine is asked), and
    that content's tag: what `plan --manifests` shows, and a build pushes."""
    context, spec = build_context(root, service)
    content = content_tag(context, spec, Engine.context_files(context, spec.dockerfile))
    repository = f"{registry}/{service.name}" if registry else f"deploy-pipeline/{service.name}"
    tag = content
    if service.test is not None:  # tested by this test: a new test tests it again
        tag += "-t" + hashlib.sha256(json.dumps(service.test).encode()).hexdigest()[:8]
    return f"{repository}:{tag}", content


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
        return build_context(self.root, service)

    def image(self, service: Service, *, look: bool = True) -> ImagePlan:
        """The image a build of this service would make, and (with `look`) whether it exists."""
        ref, content = image_name(self.root, self.registry, service)
        if not look:
            exists = False
        elif not self.registry:
            exists = self.engine.local_image(ref) is not None
        elif service.test is not None:  # only a test that passed pushes it: ask the registry
            exists = self.engine.in_registry(ref)
        else:
            exists = self.engine.pushed(ref) or self.engine.in_registry(ref)
        return ImagePlan(ref, content, exists)

    def untested(self, plan: ImagePlan) -> str:
        """The name a tested service's image has until its test passed: without a registry an
        `-untested` one; with a registry its own, as it is pushed only then."""
        return plan.ref if self.registry else plan.ref + UNTESTED

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
            tested = ctx.service.test is not None
            twins = self.engine.images_labelled(CONTENT_LABEL, plan.content)
            if twins and tested:  # the same content, not yet tested by this test: test it
                self.engine.tag(twins[0], self.untested(plan))
                return StepResult(
                    artifact=self.untested(plan),
                    message=f"{plan.ref}: same content as an image already built; tested next",
                )
            if twins:  # the same content was built for another service: name it for this one
                self.engine.tag(twins[0], plan.ref)
                if self.registry:
                    self.engine.push(plan.ref, ctx.log)
                return StepResult(
                    status="reused",
                    artifact=plan.ref,
                    message=f"{plan.ref}: same content as an image already built",
                )
            if tested:
                self.run_build(ctx, plan, self.untested(plan))
                return StepResult(artifact=self.untested(plan), message=f"built {plan.ref}")
            self.run_build(ctx, plan, plan.ref)
            if self.registry:
                ctx.log(f"pushing {plan.ref}")
                self.engine.push(plan.ref, ctx.log)
            return StepResult(artifact=plan.ref, message=f"built {plan.ref}")

    def run_build(self, ctx: StepContext, plan: ImagePlan, ref: str) -> None:
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
                ref,
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

    def test(self, ctx: StepContext) -> StepResult:
        """Run the service's test in a fresh container of the image its build made, with its
        env and no secrets (DESIGN §9); once it passed, push the image (or, with no registry,
        give it its tested name). A failure ends with the last lines of the test's output."""
        svc, image = ctx.service, ctx.artifact
        if svc.test is None or image is None:
            raise PermanentError(f"{svc.name} has no image to test: its build did not make one")
        ref = image.removesuffix(UNTESTED)
        self.run_test(ctx, image)
        if self.registry:
            ctx.log(f"pushing {ref}")
            self.engine.push(ref, ctx.log)
            return StepResult(artifact=ref, message=f"test passed; pushed {ref}")
        self.engine.tag(image, ref)
        if ref != image:
            self.engine.untag(image)
        return StepResult(artifact=ref, message=f"test passed ({ref})")

    def run_test(self, ctx: StepContext, image: str) -> None:
        svc = ctx.service
        assert svc.test is not None
        ctx.log(f"testing {image}")
        container = self.engine.run(
            ContainerSpec(
                name=f"dp-test-{ctx.environment}-{svc.name}-{secrets.token_hex(4)}",
                image=image,
                labels={TEST_LABEL: svc.name},
                network=None,
                alias=svc.name,
                command=svc.test,
                env=dict(svc.env),  # and no secrets: a test never sees them
                restart=False,
            )
        )
        try:
            while (code := self.engine.wait(container.id, timeout=1)) is None:
                if ctx.cancel.is_set() and ctx.remaining() > 0:
                    raise Cancelled(ctx.reason())
                if ctx.cancel.is_set() or ctx.remaining() <= 1:  # say why before the deadline
                    raise PermanentError(
                        f"{svc.name}'s test did not finish within its timeout"
                        + _output_tail(self.engine.logs(container.id, tail=TEST_TAIL))
                    )
            output = self.engine.logs(container.id, tail=200)
            for line in output.splitlines():
                ctx.log(line)
            if code != 0:
                raise PermanentError(
                    f"{svc.name}'s test exited with code {code}" + _output_tail(output)
                )
        finally:
            self.engine.remove(container.id)


def _output_tail(output: str) -> str:
    """`; last lines of its output:` and those lines, as many of the last TEST_TAIL as fit in
    TEST_TAIL_CHARS (each line cut to 200 characters): the end of a failed test's message."""
    lines = [line if len(line) <= 200 else line[:199] + "…" for line in output.splitlines()]
    kept: list[str] = []
    for line in reversed(lines[-TEST_TAIL:]):
        if sum(len(k) + 1 for k in kept) + len(line) > TEST_TAIL_CHARS:
            break
        kept.insert(0, line)
    tail = "\n".join(kept)
    return f"; last lines of its output:\n{tail}" if kept else "; it wrote no output"


def _stop_when(ctx: StepContext, stop: threading.Event) -> None:
    """Stop the build when the step is cancelled or runs past its deadline."""
    while not stop.is_set():
        if ctx.cancel.is_set() or ctx.remaining() <= 0:
            stop.set()
            return
        ctx.cancel.wait(min(0.2, max(ctx.remaining(), 0.01)))
