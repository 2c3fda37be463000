"""Rules on single values of the file that the schema cannot state: names (of services,
targets, environments; a preview's name for any pull-request number), one-line texts (what is
printed must not forge a line), and build paths that must stay inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from deploy_pipeline import schema
from deploy_pipeline.config.problems import Loc, Problems, describe, located, quote
from deploy_pipeline.errors import ConfigError
from deploy_pipeline.model import BuildSpec, Pipeline

# Names are checked whole (fullmatch; `$` would also match before a final line break).
NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

STAGE_MAX = 100
PR_SAMPLES = (1, 9_999_999_999)  # pull-request numbers: the shortest, and a long one
BUILD_TEXTS = ("context", "dockerfile", "target")


def one_line(text: str) -> bool:
    """Printable characters and spaces, not blank: no line break, tab, control or invisible
    format character (a bidirectional override, say) that could change what a reader sees."""
    return text.strip() != "" and text.isprintable()


def preview_template(problems: Problems, template: str) -> None:
    """previews.name must give a valid environment name for every pull request: checked
    here with a short and a long number, not at the first pull request's run."""
    if "{number}" not in template:
        problems.error(
            ("previews", "name"),
            "must contain {number} so each pull request gets "
            f"its own environment, got {quote(template)}",
        )
        return
    for number in PR_SAMPLES:
        name = template.replace("{number}", str(number))
        if not NAME.fullmatch(name):
            problems.error(
                ("previews", "name"),
                f"gives {quote(name)} for pull request #{number}, which is no environment "
                "name (lowercase letters, digits and '-', at most 63, starting and ending "
                f"with a letter or digit); write it like pr-{{number}}, got {quote(template)}",
            )
            return


def check_texts(problems: Problems, m: schema.PipelineModel) -> None:
    """Stage names and the file's other one-line values reach logs, job summaries and
    pull-request comments: a line break or control character there could forge a line
    (a workflow command, a Markdown heading), so each must be single-line printable text.
    (References to stages, services and environments are checked against these names.)"""
    for i, stage in enumerate(m.stages or ()):
        if not one_line(stage) or len(stage) > STAGE_MAX:
            problems.error(
                ("stages", i),
                f"stage names are single-line printable text of 1 to {STAGE_MAX} characters "
                "(letters, digits, spaces and punctuation; no line breaks, tabs or control "
                f"characters), got {describe(stage)}",
            )
    texts: list[tuple[Loc, str | None]] = [(("registry",), m.registry)]
    if m.previews is not None:
        texts.append((("previews", "label"), m.previews.label))
    for name, t in m.targets.items():
        texts += [(("targets", name, key), getattr(t, key)) for key in ("context", "domain")]
    for name, s in m.services.items():
        loc: Loc = ("services", name)
        texts += [((*loc, key), getattr(s, key)) for key in ("image", "health", "schedule")]
        texts += [((*loc, "env", key), key) for key in s.env]
        if s.build is not None:
            b = s.build
            texts += [((*loc, "build", k), getattr(b, k)) for k in BUILD_TEXTS]
            texts += [((*loc, "build", "args", key), key) for key in b.args]
    for where, value in texts:
        if value is not None and not one_line(value):
            problems.error(
                where,
                "expected single-line printable text (no line breaks, tabs or control "
                f"characters), got {describe(value)}",
            )


# --- build paths: inside the repository ------------------------------------------------------


def escapes(root: Path, build: BuildSpec) -> str | None:
    """Which of a build's paths leads outside `root` once resolved, links followed: 'context',
    'dockerfile', or None when both stay inside. The engine would be sent that folder, and the
    Dockerfile is read on this machine: neither may be anything of the machine but the repo."""
    try:
        inside = root.resolve()
        context = (inside / build.context).resolve()
        if not context.is_relative_to(inside):
            return "context"
        dockerfile = (context / build.dockerfile).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte: not a usable path
        return "context"
    return None if dockerfile.is_relative_to(inside) else "dockerfile"


def outside_message(build: BuildSpec, key: str) -> str:
    """What is wrong with a build path that `escapes` found leading outside the repository."""
    value = build.context if key == "context" else build.dockerfile
    return (
        f"must stay inside the repository: {quote(value)} leads outside the pipeline file's "
        "folder (paths are relative to it, links followed)"
    )


def confine(pipeline: Pipeline, root: Path) -> list[ConfigError]:
    """Every build context and Dockerfile that leads outside `root`, the pipeline file's folder
    (the repository), as located errors."""
    errors = []
    for name, service in pipeline.services.items():
        if service.build is not None and (key := escapes(root, service.build)) is not None:
            loc = ("services", name, "build", key)
            errors.append(located(pipeline, loc, outside_message(service.build, key)))
    return errors
