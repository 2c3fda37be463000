"""What a rehearsal (`--dry-run`, `plan`) knows of a real target without touching it: whether
each image would be built or reused, and how long each step last took there."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from deploy_pipeline.backends import create_backend
from deploy_pipeline.backends.base import ImageChecker
from deploy_pipeline.errors import DeployPipelineError
from deploy_pipeline.model import RunPlan, Target
from deploy_pipeline.store.state import Store

ImageNotes = dict[tuple[str, str], str]  # (target, service) → `reused …`, `build …`, …


def image_states(run_plan: RunPlan, root: Path, registry: str | None) -> ImageNotes:
    """For `plan`: per (target, service) with a build, whether the image would be reused. Targets
    whose engine cannot be reached say so instead of failing the plan."""
    notes: ImageNotes = {}
    for plan in run_plan.plans:
        for tp in plan.targets:
            built = [p.service for sp in tp.stages for p in sp.services if p.build]
            if not built or any(t == tp.target.name for t, _ in notes):
                continue
            try:
                backend = create_backend(tp.target, root=root, registry=registry)
            except DeployPipelineError:
                unknown = "image unknown: the target's engine does not answer"
                notes.update({(tp.target.name, s.name): unknown for s in built})
                continue
            try:
                if isinstance(backend, ImageChecker):
                    for svc in built:
                        try:
                            notes[(tp.target.name, svc.name)] = backend.image_status(svc)
                        except DeployPipelineError as exc:
                            notes[(tp.target.name, svc.name)] = f"image unknown: {exc}"
            finally:
                backend.close()
    return notes


def rehearsed(target: Target, store: Store | None, images: ImageNotes) -> Target:
    """A real target as its rehearsal runs it: each step lasting what it last took there
    (the state database's measured durations), a build as long as a build or a reuse,
    whichever `plan` expects. A simulated target keeps the durations it was given."""
    if target.kind == "simulated" or store is None:
        return target
    durations: dict[str, dict[str, float]] = {}
    for (service, phase, status), seconds in store.measured_durations(target.name).items():
        note = images.get((target.name, service), "")
        wanted = "reused" if phase == "build" and note.startswith("reused") else "succeeded"
        if status == wanted:
            durations.setdefault(service, {})[phase] = seconds
    return replace(target, durations=durations)
