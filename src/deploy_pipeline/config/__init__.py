"""Read `.deploy-pipeline.yml` into a Pipeline: YAML with line numbers, then shape (pydantic),
then meaning (stages, targets, skip sets). Every problem is a ConfigError naming the file, the
line, the key path and what would be right; all of a file's problems are reported at once.

    reading    the file itself (a regular file, 1 MiB, no link out) and YAML with line numbers
    shape      the top mapping, `version: 1`, pydantic's errors in the project's words
    building   the meaning of each section (DESIGN.md §2–§3) and the model it makes
    access     a target's `tls:` and a prebuilt image's `registry_auth:` (DESIGN.md §11)
    checks     names, one-line texts, the previews' name template, build paths kept inside
    sizing     requests and limits, storage, autoscaling, probes, security (DESIGN.md §11)
    problems   the problems of one file, each at its line and key path, and their wording

Callers import from `deploy_pipeline.config` only: these names are its interface.
"""

from __future__ import annotations

import functools
from pathlib import Path

from deploy_pipeline.config.building import build
from deploy_pipeline.config.checks import (
    BUILD_TEXTS,
    NAME,
    PR_SAMPLES,
    STAGE_MAX,
    VARIABLE,
    confine,
    escapes,
    one_line,
    outside_message,
)
from deploy_pipeline.config.problems import SECTIONS, SIMPLE, Loc, Problems, located, quote
from deploy_pipeline.config.reading import (
    KINDS,
    MAX_DEPTH,
    MAX_FILE,
    MAX_NODES,
    read_pipeline_file,
    read_yaml,
)
from deploy_pipeline.config.shape import check_shape
from deploy_pipeline.config.sizing import resized
from deploy_pipeline.config.substitution import substitute
from deploy_pipeline.errors import ConfigErrors
from deploy_pipeline.model import Pipeline

__all__ = [
    "BUILD_TEXTS",
    "DEFAULT_FILE",
    "KINDS",
    "MAX_DEPTH",
    "MAX_FILE",
    "MAX_NODES",
    "NAME",
    "PR_SAMPLES",
    "SECTIONS",
    "SIMPLE",
    "STAGE_MAX",
    "VARIABLE",
    "Loc",
    "confine",
    "escapes",
    "load_config",
    "located",
    "one_line",
    "outside_message",
    "parse_config",
    "quote",
    "read_pipeline_file",
    "resized",
    "substitute",
]

DEFAULT_FILE = ".deploy-pipeline.yml"


def load_config(path: str | Path) -> Pipeline:
    """Read and check a pipeline file; raise ConfigErrors listing every problem found."""
    file = Path(path)
    pipeline = parse_config(read_pipeline_file(file), str(file))
    # not in parse_config: what the paths lead to can change while the text stays the same
    errors = confine(pipeline, file.resolve().parent)
    if errors:
        raise ConfigErrors(errors)
    return pipeline


@functools.lru_cache(maxsize=16)
def parse_config(text: str, name: str = DEFAULT_FILE) -> Pipeline:
    """The checked pipeline of a file's text. Remembered: the receiver reads the file twice for
    each run, ~1.4 ms of pure-Python YAML each time that the 202s wait for (the GIL)."""
    problems = Problems(name)
    data = read_yaml(text, problems)
    return build(problems, check_shape(data, problems))
