"""The simulated target: timings and failures you choose, nothing touched. It remembers what it
"deployed" (in the store) so stop, restart and delete behave the same way across commands;
as a rehearsal (`--dry-run`) it remembers nothing and refuses nothing.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from deploy_pipeline.backends.base import BackendState, LogStream, StepContext, StepResult
from deploy_pipeline.errors import NoLogs, PermanentError
from deploy_pipeline.model import Service, Target

RUNNING, STOPPED, DONE = "running", "stopped", "completed"


def digest_of(image: str) -> str:
    """The image by a digest a registry could give it (`api@sha256:…`), made up from its name:
    what the simulated target says it runs."""
    if "@" in image:
        return image
    name = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{name}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


class SimulatedBackend:
    def __init__(
        self,
        target: Target,
        state: BackendState,
        *,
        rehearsal: bool = False,
        force_conflicts: bool = False,
        root: Path | None = None,
        registry: str | None = None,
    ) -> None:
        self.target = target
        self.state = state
        self.rehearsal = rehearsal
        # a rehearsal of a real target: per service, what `plan` says of its image
        # ("reused: REF", "to build: REF", "image unknown: why")
        self.images: dict[str, str] = {}

    def _wait(self, ctx: StepContext) -> None:
        seconds = self.target.durations.get(ctx.service.name, {}).get(ctx.phase, 0.0)
        if seconds:  # a step lasts its duration from its `started` event, hand-over included
            since = time.monotonic() - ctx.started if ctx.started else 0.0
            ctx.sleep(max(seconds - since, 0.0))
        if self.target.fail.get(ctx.service.name) == ctx.phase:
            raise PermanentError(
                f"simulated failure: target {self.target.name} "
                f"fails {ctx.service.name}'s {ctx.phase}"
            )

    def _key(self, ctx: StepContext) -> str:
        return f"{ctx.environment}/{ctx.service.name}"

    def _url(self, ctx: StepContext) -> str | None:
        return self._url_of(ctx.environment, ctx.service)

    def _url_of(self, environment: str, svc: Service) -> str | None:
        if svc.public or (svc.port and svc.type in {"container", "application"}):
            return f"http://{svc.name}.{environment}.{self.target.name}.simulated"
        return None

    def _set(self, ctx: StepContext, value: str | None) -> None:
        if not self.rehearsal:
            self.state.put(self._key(ctx), value)

    def build(self, ctx: StepContext) -> StepResult:
        self._wait(ctx)
        spec = repr(ctx.service.build).encode()
        tag = f"{ctx.service.name}:{hashlib.sha256(spec).hexdigest()[:12]}"
        note = self.images.get(ctx.service.name)
        if note is None:
            return StepResult(artifact=tag, message="built (simulated)")
        verdict, _, ref = note.partition(": ")
        if verdict == "reused":  # the real run would find it: so does its rehearsal
            return StepResult(status="reused", artifact=ref, message=f"{note} (rehearsal)")
        if verdict == "to build":
            return StepResult(artifact=ref, message=f"{note} (rehearsal: not built)")
        return StepResult(artifact=tag, message=f"{note} (rehearsal)")

    def test(self, ctx: StepContext) -> StepResult:
        self._wait(ctx)
        return StepResult(artifact=ctx.artifact, message="test passed (simulated)")

    def deploy(self, ctx: StepContext) -> StepResult:
        self._wait(ctx)
        svc = ctx.service
        finished = svc.type == "job" and svc.schedule is None
        self._set(ctx, DONE if finished else RUNNING)
        what = "ran to completion" if finished else "scheduled" if svc.schedule else "running"
        image = ctx.artifact or svc.image
        return StepResult(
            message=f"{what} (simulated)", url=self._url(ctx), image=image and digest_of(image)
        )

    def restart(self, ctx: StepContext) -> StepResult:
        current = self.state.get(self._key(ctx))
        if current is None and not self.rehearsal:
            raise PermanentError(
                f"{ctx.service.name} is not deployed in {ctx.environment} on target "
                f"{self.target.name}: deploy it first"
            )
        self._wait(ctx)
        self._set(ctx, DONE if current == DONE else RUNNING)
        return StepResult(message="restarted (simulated)", url=self._url(ctx))

    def stop(self, ctx: StepContext) -> StepResult:
        if self.state.get(self._key(ctx)) is None and not self.rehearsal:
            return StepResult(message="not deployed: nothing to stop")
        self._wait(ctx)
        self._set(ctx, STOPPED)
        return StepResult(message="stopped (simulated)")

    def delete(self, ctx: StepContext) -> StepResult:
        self._wait(ctx)
        existed = self.state.get(self._key(ctx)) is not None
        self._set(ctx, None)
        return StepResult(message="deleted (simulated)" if existed else "nothing to delete")

    def status(self, environment: str, service: Service) -> str:
        return self.state.get(f"{environment}/{service.name}") or "absent"

    def service_url(self, environment: str, service: Service) -> str | None:
        """The URL a deployed service's deploy reported (for `${url:SERVICE}`)."""
        if self.state.get(f"{environment}/{service.name}") is None:
            return None
        return self._url_of(environment, service)

    def service_logs(
        self,
        environment: str,
        service: Service,
        *,
        tail: int | None,
        follow: bool,
        stop: threading.Event,
    ) -> list[LogStream]:
        """Nothing runs on a simulated target, so there is no output to show: said so."""
        raise NoLogs(
            f"target {self.target.name} is simulated: nothing runs there, so {service.name} "
            "has no output (a run's events and step logs are in `logs --run ID`)"
        )

    def close(self) -> None:
        """Nothing to release: the simulated target holds no connection."""
