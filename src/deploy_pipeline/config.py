"""Read `.deploy-pipeline.yml` into a Pipeline: YAML with line numbers, then shape (pydantic),
then meaning (stages, targets, skip sets). Every problem is a ConfigError naming the file, the
line, the key path and what would be right; all of a file's problems are reported at once.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import stat
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from deploy_pipeline import schema
from deploy_pipeline.errors import ConfigError, ConfigErrors, choices
from deploy_pipeline.model import (
    BUILT,
    DEFAULT_STAGE_OF,
    DEFAULT_STAGES,
    LONG_RUNNING,
    BuildSpec,
    Defaults,
    Environment,
    KeyPath,
    Pipeline,
    Previews,
    Service,
    Strategy,
    Target,
)

DEFAULT_FILE = ".deploy-pipeline.yml"
MAX_NODES = 100_000
MAX_DEPTH = 50
SECTIONS = ("services", "targets", "environments")
# Names are checked whole (fullmatch; `$` would also match before a final line break).
NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
Loc = KeyPath


def load_config(path: str | Path) -> Pipeline:
    """Read and check a pipeline file; raise ConfigErrors listing every problem found."""
    file = Path(path)
    pipeline = parse_config(read_pipeline_file(file), str(file))
    # not in parse_config: what the paths lead to can change while the text stays the same
    errors = confine(pipeline, file.resolve().parent)
    if errors:
        raise ConfigErrors(errors)
    return pipeline


MAX_FILE = 1024 * 1024
KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_pipeline_file(file: Path) -> str:
    """The text of a pipeline file, which must be a regular file of at most 1 MiB inside the
    folder it deploys: a pipe or a device is not read (it could hang or never end), and a link
    leading elsewhere is not followed (its target's text would show in the error messages, and
    a pull request could link to a secret). Errors name the path as given."""

    def refuse(problem: str) -> ConfigErrors:
        return ConfigErrors([ConfigError(str(file), None, "", problem)])

    try:
        real = file.resolve(strict=True)
        if not real.is_relative_to(file.absolute().parent.resolve()):
            raise refuse(
                "a symbolic link leading outside its folder, not read: keep the pipeline file "
                "in the folder it deploys (a link to a file inside that folder is fine)"
            )
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(real, flags)  # non-blocking: opening a named pipe does not wait for a writer
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                kind = KINDS.get(stat.S_IFMT(mode), "not a file")
                raise refuse(
                    f"cannot read it: it is not a regular file ({kind}); pass -f the pipeline file"
                )
            with os.fdopen(fd, "rb", closefd=False) as stream:
                data = stream.read(MAX_FILE + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_FILE:
            raise refuse("cannot read it: it is over 1 MiB; a pipeline file takes a few kilobytes")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise refuse("no such file; create it or pass -f FILE") from None
    except OSError as exc:
        raise refuse(f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise refuse(f"cannot read it: {exc}") from None


@functools.lru_cache(maxsize=16)
def parse_config(text: str, name: str = DEFAULT_FILE) -> Pipeline:
    """The checked pipeline of a file's text. Remembered: the receiver reads the file twice for
    each run, ~1.4 ms of pure-Python YAML each time that the 202s wait for (the GIL)."""
    checker = _Checker(name, {})
    data = _read_yaml(text, name, checker)
    return checker.check(data)


def located(pipeline: Pipeline, loc: Loc, problem: str) -> ConfigError:
    """A problem found after the file was read, at the line of `loc` (or of the nearest key
    holding it, for a key the file leaves to its default)."""
    probe = loc
    while probe and probe not in pipeline.lines:
        probe = probe[:-1]
    return ConfigError(pipeline.path, pipeline.lines.get(probe), _path(loc), problem)


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


# --- YAML with line numbers ------------------------------------------------------------------


def _read_yaml(text: str, name: str, checker: _Checker) -> Any:
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            raise ConfigErrors(
                [ConfigError(name, 1, "", "the file is empty; start with `version: 1`")]
            )
        checker.lines[()] = node.start_mark.line + 1
        return _Walker(loader, checker).value(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not valid YAML"
        if exc.context == "expected a single document in the stream":
            problem = "the file holds several YAML documents (---); keep one"
        elif "'\\t'" in problem:
            problem += "; YAML indents with spaces, not tabs"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigErrors(
            [ConfigError(name, line, "", f"not valid YAML: {problem}", column)]
        ) from None
    except yaml.reader.ReaderError as exc:  # a control character the reader refuses
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise ConfigErrors(
            [
                ConfigError(
                    name,
                    line,
                    "",
                    f"not valid YAML: the character {what} is not allowed in YAML",
                    column,
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())  # one problem, one line
        raise ConfigErrors([ConfigError(name, None, "", f"not valid YAML: {problem}")]) from None
    except RecursionError:
        raise ConfigErrors(
            [ConfigError(name, None, "", f"nested deeper than {MAX_DEPTH} levels; flatten it")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


class _Walker:
    """Builds plain Python data from YAML nodes, recording the line of every key and item."""

    def __init__(self, loader: yaml.SafeLoader, checker: _Checker) -> None:
        self.loader, self.checker, self.count = loader, checker, 0
        self.name, self.lines = checker.name, checker.lines
        self.open: set[int] = set()  # the nodes being built: an alias to one of them is a loop

    def fail(self, line: int | None, loc: Loc, problem: str) -> ConfigErrors:
        return ConfigErrors([ConfigError(self.name, line, _path(loc), problem)])

    def value(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        line = node.start_mark.line + 1
        if self.count > MAX_NODES:
            raise self.fail(None, (), f"the file expands to over {MAX_NODES} values")
        if len(loc) > MAX_DEPTH:
            raise self.fail(line, loc, f"nested deeper than {MAX_DEPTH} levels; flatten it")
        if id(node) in self.open:
            raise self.fail(line, loc, "an alias (*name) refers to a value that contains it")
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for i, item in enumerate(node.value):
                    self.lines[(*loc, i)] = item.start_mark.line + 1
                    items.append(self.value(item, (*loc, i)))
                return items
            return self.mapping(node, loc)
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.Node, loc: Loc) -> dict[str, Any]:
        assert isinstance(node, yaml.MappingNode)
        self.loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(line, loc, "keys must be plain text, not a list or a mapping")
            raw = self.loader.construct_object(key_node, deep=True)
            key = raw if isinstance(raw, str) else str(raw)
            if key in result:  # keep the first, report each repeat, go on reading
                first = self.lines.get((*loc, key))
                self.checker.errors.append(
                    ConfigError(
                        self.name,
                        line,
                        _path((*loc, key)),
                        f"duplicate key (first set at line {first}); keep one",
                    )
                )
                continue
            self.lines[(*loc, key)] = line
            result[key] = self.value(value_node, (*loc, key))
        return result


SIMPLE = re.compile(r"[A-Za-z0-9_.\- ]+")


def quote(value: object) -> str:
    """A name as it appears in a message: quoted, and escaped if it could break the line."""
    text = str(value)
    return f"'{text}'" if SIMPLE.fullmatch(text) else repr(text)


def _path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out


# --- shape: pydantic errors in the project's words -----------------------------------------------


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def _problem(err: Mapping[str, Any], known: list[str]) -> str:
    kind, got, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key {quote(key)} ({hint})"
    if kind == "missing":
        return "required, but missing"
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return f"expected an integer, got {_describe(got)}"
    if kind in {"bool_parsing", "bool_type"}:
        return f"expected true or false, got {_describe(got)}"
    if kind in {"string_type", "string_too_short"}:
        return f"expected a non-empty string, got {_describe(got)}"
    if kind == "list_type":
        return f"expected a list, got {_describe(got)}"
    if kind in {"model_type", "model_attributes_type"} and err["loc"][-1] == "build":
        return (
            "expected a folder (build: ./api) or a mapping {context, dockerfile, args, "
            f"target}}, got {_describe(got)}"
        )
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"expected a mapping of keys to values, got {_describe(got)}"
    if kind == "string_pattern_mismatch":
        return f"expected a Kubernetes quantity like 250m, 2 or 512Mi, got {_describe(got)}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {_describe(got)}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bound = {"greater_than_equal": "≥", "less_than_equal": "≤"}.get(kind, kind)
        limit = next(iter(ctx.values()), "")
        return f"expected a number {bound} {limit}, got {_describe(got)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg']}, got {_describe(got)}"


def _known_keys(loc: Loc) -> list[str]:
    """The keys allowed at the mapping that holds `loc`'s last key, for 'did you mean'."""
    model: Any = schema.PipelineModel
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part)) or next(
                (f for f in model.model_fields.values() if f.alias == part), None
            )
            if field is None:
                return []
            model = field.annotation
        else:  # dict[str, X] or list[X]: step into the value type
            args = [a for a in typing.get_args(model) if a is not type(None)]
            model = args[-1] if args else None
        while typing.get_origin(model) in {typing.Union, types.UnionType, typing.Annotated}:
            args = [a for a in typing.get_args(model) if a is not type(None)]
            model = args[0] if args else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


# --- meaning: the rules of DESIGN.md §2–§3 -----------------------------------------------------


class _Checker:
    def __init__(self, name: str, lines: dict[Loc, int]) -> None:
        self.name, self.lines, self.errors = name, lines, list[ConfigError]()

    def error(self, loc: Loc, problem: str) -> None:
        probe = loc
        while probe and probe not in self.lines:
            probe = probe[:-1]
        self.errors.append(ConfigError(self.name, self.lines.get(probe), _path(loc), problem))

    def raise_if_any(self) -> None:
        if self.errors:
            self.errors.sort(key=lambda e: e.line or 0)
            raise ConfigErrors(self.errors)

    def check(self, data: Any) -> Pipeline:
        if not isinstance(data, dict):
            self.error(
                (), f"expected a mapping at the top (version:, services:, …), got {_describe(data)}"
            )
            self.raise_if_any()
        version = data.get("version")
        if type(version) is not int or version != 1:  # True and 1.0 are not version 1
            if "version" not in data:
                self.error((), "the file has no `version:`; add `version: 1` at the top")
            else:
                self.error(
                    ("version",),
                    f"this deploy-pipeline reads version 1 files, got "
                    f"{_describe(version)}; write `version: 1` or upgrade deploy-pipeline",
                )
            self.errors = [e for e in self.errors if e.path == "version" or not e.path]
            self.raise_if_any()
        self.note_names(data)
        model: schema.PipelineModel | None
        try:
            model = schema.PipelineModel.model_validate(data)
        except ValidationError as exc:
            model = self.salvage(data, exc)
        return self.build(model)

    def note_names(self, data: dict[str, Any]) -> None:
        """The names the file gives, valid or not: references are checked against these, so a
        service with a bad key is not also reported as missing wherever it is named."""
        self.names: dict[str, list[str] | None] = {}
        for section in SECTIONS:
            raw = data.get(section, {})
            self.names[section] = [str(k) for k in raw] if isinstance(raw, dict) else None
        stages = data.get("stages")
        good = stages is None or (
            isinstance(stages, list) and all(isinstance(s, str) for s in stages)
        )
        self.names["stages"] = None if not good else None if stages is None else list(stages)
        self.stages_known = good

    def salvage(self, data: dict[str, Any], exc: ValidationError) -> schema.PipelineModel | None:
        """Report every shape problem, then keep checking what is well formed, so one run of
        `validate` shows the shape and the meaning problems together."""
        cleaned = dict(data)
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if p != "[key]")
            self.error(loc, _problem(err, _known_keys(loc)))
            section = loc[0] if loc else None
            if section in SECTIONS and len(loc) >= 2 and isinstance(cleaned.get(section), dict):
                cleaned[section] = {k: v for k, v in cleaned[section].items() if k != loc[1]}
            elif section in SECTIONS:
                cleaned[section] = {}
                self.names[str(section)] = None
            elif section is not None:
                cleaned.pop(str(section), None)
                if section == "stages":
                    self.stages_known = False
        try:
            return schema.PipelineModel.model_validate(cleaned)
        except ValidationError:
            return None

    def refer(self, loc: Loc, kind: str, name: str) -> None:
        """Check a reference to a service, target, environment or stage by the file's names."""
        section = {
            "service": "services",
            "target": "targets",
            "environment": "environments",
            "stage": "stages",
        }[kind]
        known = self.names.get(section)
        if known is None or name in known:
            return  # that section is broken or absent from the file: it is reported on its own
        self.error(loc, f"no {kind} named {quote(name)}; " + choices(name, known, section))

    def build(self, m: schema.PipelineModel | None) -> Pipeline:
        if m is None:  # too broken to check the meaning: report the shape problems
            self.raise_if_any()
            raise AssertionError("a failed validation always has errors")
        stages = tuple(m.stages) if m.stages is not None else DEFAULT_STAGES
        if self.names["stages"] is None and self.stages_known:
            self.names["stages"] = list(stages)
        if not stages:
            self.error(("stages",), "an empty list; name at least one stage or remove `stages:`")
        seen: set[str] = set()
        for i, stage in enumerate(stages):
            if stage in seen:
                self.error(
                    ("stages", i), f"stage {quote(stage)} is listed twice; stage names are unique"
                )
            seen.add(stage)
        if not m.services and self.names["services"] == []:
            self.error(("services",), "no services; describe at least one")
        services = {name: self.service(name, s, stages) for name, s in m.services.items()}
        targets = {name: self.target(name, t) for name, t in m.targets.items()}
        if not m.targets and self.names["targets"] == []:  # no targets: the local engine
            targets = {"local": Target(name="local", kind="docker")}
            self.names["targets"] = list(targets)
        order = m.strategy.environments if m.strategy and m.strategy.environments else "sequential"
        environments = {
            name: self.environment(name, e, m.strategy) for name, e in m.environments.items()
        }
        previews = None
        if m.previews is not None:
            self.refer(("previews", "from"), "environment", m.previews.from_)
            self.preview_template(m.previews.name)
            previews = Previews(
                source=m.previews.from_,
                name=m.previews.name,
                label=m.previews.label,
                drafts=m.previews.drafts,
                forks=m.previews.forks,
                ttl=m.previews.ttl,
                max=m.previews.max,
            )
        self.check_texts(m)
        self.raise_if_any()
        d = m.defaults
        return Pipeline(
            path=self.name,
            stages=stages,
            services=services,
            targets=targets,
            environments=environments,
            defaults=Defaults(d.parallelism, d.timeout, d.build_ahead, d.retries),
            registry=m.registry,
            previews=previews,
            environment_order=order,
            lines=self.lines,
        )

    def service(self, name: str, s: schema.ServiceModel, stages: tuple[str, ...]) -> Service:
        loc: Loc = ("services", name)
        if not NAME.fullmatch(name):
            self.error(
                loc,
                "service names are lowercase letters, digits and '-' (at most 63), "
                f"starting and ending with a letter or digit, got {quote(name)}",
            )
        if s.type in BUILT and s.build is None and s.image is None:
            if s.type == "job":
                self.error(
                    loc, "a job needs `build:` (a folder of the repo) or `image:` (a prebuilt one)"
                )
            else:
                self.error(
                    loc,
                    "an application is built from the repo: add `build: ./folder` "
                    "(or use type: container with `image:`)",
                )
        if s.type in BUILT and s.build is not None and s.image is not None:
            self.error(
                (*loc, "image"),
                "give `build:` or `image:`, not both: a built image is named by its content",
            )
        if s.build is not None and s.type not in BUILT:
            self.error(
                (*loc, "build"),
                f"a {s.type} runs a prebuilt image, it is not built: use "
                "`image:`, or type: application to build it from the repo",
            )
        if s.type not in BUILT and s.image is None:
            self.error(loc, f"a {s.type} needs `image:` (for example postgres:16 or nginx:1.27)")
        if s.schedule is not None and s.type != "job":
            self.error((*loc, "schedule"), "only a job can have a schedule (it becomes a cron job)")
        if s.replicas is not None and s.type not in LONG_RUNNING:
            self.error((*loc, "replicas"), "only containers and applications have replicas")
        if s.public and s.type not in LONG_RUNNING:
            self.error((*loc, "public"), "only containers and applications can be public")
        if s.health is not None and s.port is None:
            self.error(
                (*loc, "health"), "a health path is probed on the service's port: add `port:`"
            )
        if s.health is not None and not s.health.startswith("/"):
            self.error(
                (*loc, "health"), f"expected an HTTP path starting with '/', got {quote(s.health)}"
            )
        for i, secret in enumerate(s.secrets):
            if not VARIABLE.fullmatch(secret):
                self.error(
                    (*loc, "secrets", i),
                    "expected the name of an environment variable "
                    f"(letters, digits, '_'), got {quote(secret)}",
                )
        if s.stage is not None:
            stage = s.stage
            if self.stages_known:
                self.refer((*loc, "stage"), "stage", stage)
        else:  # the default stage of its type if that exact name exists, otherwise the last stage
            default = DEFAULT_STAGE_OF[s.type]
            stage = default if default in stages else stages[-1] if stages else ""
        b = s.build
        return Service(
            name=name,
            type=s.type,
            stage=stage,
            image=s.image,
            build=BuildSpec(b.context, b.dockerfile, tuple(b.args.items()), b.target)
            if b
            else None,
            command=tuple(s.command) if s.command is not None else None,
            env=tuple(s.env.items()),
            port=s.port,
            replicas=s.replicas if s.replicas is not None else 1,
            health=s.health,
            secrets=tuple(s.secrets),
            schedule=s.schedule,
            public=s.public,
            timeout=s.timeout,
            resources=tuple(
                (k, v) for k, v in (s.resources.model_dump() if s.resources else {}).items() if v
            ),
        )

    def target(self, name: str, t: schema.TargetModel) -> Target:
        loc: Loc = ("targets", name)
        if not NAME.fullmatch(name):
            self.error(
                loc, f"target names are lowercase letters, digits and '-', got {quote(name)}"
            )
        if t.kind != "simulated":
            for key in ("durations", "fail"):
                if getattr(t, key):
                    self.error(
                        (*loc, key), f"only simulated targets take `{key}:`, this one is {t.kind}"
                    )
        if t.domain is not None and t.kind != "kubernetes":
            self.error(
                (*loc, "domain"), f"only kubernetes targets take a `domain:`, this one is {t.kind}"
            )
        if t.domain is not None and "{service}" not in t.domain:
            self.error(
                (*loc, "domain"),
                f"must contain {{service}} (and usually {{environment}}), got {quote(t.domain)}",
            )
        if t.context is not None and t.kind != "kubernetes":
            self.error(
                (*loc, "context"),
                f"only kubernetes targets take a `context:`, this one is {t.kind}",
            )
        for key in ("durations", "fail"):
            for service in getattr(t, key):
                self.refer((*loc, key, service), "service", service)
        return Target(
            name=name,
            kind=t.kind,
            context=t.context,
            domain=t.domain,
            durations={k: {str(ph): d for ph, d in v.items()} for k, v in t.durations.items()},
            fail=dict(t.fail),
        )

    def environment(
        self,
        name: str,
        e: schema.EnvironmentModel,
        strategy: schema.StrategyModel | None,
    ) -> Environment:
        loc: Loc = ("environments", name)
        if not NAME.fullmatch(name):
            self.error(
                loc, f"environment names are lowercase letters, digits and '-', got {quote(name)}"
            )
        if e.target is not None and e.targets is not None:
            self.error((*loc, "targets"), "give `target:` or `targets:`, not both")
        names = e.targets if e.targets is not None else [e.target] if e.target else []
        known = self.names["targets"]
        if not names and known is not None:  # (a broken targets: section is reported alone)
            if len(known) == 1:
                names = list(known)
            elif e.targets is None:
                self.error(
                    loc, "say where it deploys with `target:`; " + choices("", known, "targets")
                )
        if e.targets is not None and not e.targets:
            self.error((*loc, "targets"), "an empty list; name at least one target")
        for i, target in enumerate(names):
            where = (*loc, "targets", i) if e.targets is not None else (*loc, "target")
            self.refer(where, "target", target)
        for i, skipped in enumerate(e.skip):
            self.refer((*loc, "skip", i), "service", skipped)
        own = e.strategy or strategy
        return Environment(
            name=name,
            targets=tuple(names),
            skipped=frozenset(e.skip),
            strategy=Strategy(own.services, own.targets) if own else Strategy(),
            production=e.production,
        )

    def preview_template(self, template: str) -> None:
        """previews.name must give a valid environment name for every pull request: checked
        here with a short and a long number, not at the first pull request's run."""
        if "{number}" not in template:
            self.error(
                ("previews", "name"),
                "must contain {number} so each pull request gets "
                f"its own environment, got {quote(template)}",
            )
            return
        for number in PR_SAMPLES:
            name = template.replace("{number}", str(number))
            if not NAME.fullmatch(name):
                self.error(
                    ("previews", "name"),
                    f"gives {quote(name)} for pull request #{number}, which is no environment "
                    "name (lowercase letters, digits and '-', at most 63, starting and ending "
                    f"with a letter or digit); write it like pr-{{number}}, got {quote(template)}",
                )
                return

    # --- text that is printed: names and one-line values --------------------------------------

    def check_texts(self, m: schema.PipelineModel) -> None:
        """Stage names and the file's other one-line values reach logs, job summaries and
        pull-request comments: a line break or control character there could forge a line
        (a workflow command, a Markdown heading), so each must be single-line printable text.
        (References to stages, services and environments are checked against these names.)"""
        for i, stage in enumerate(m.stages or ()):
            if not one_line(stage) or len(stage) > STAGE_MAX:
                self.error(
                    ("stages", i),
                    f"stage names are single-line printable text of 1 to {STAGE_MAX} characters "
                    "(letters, digits, spaces and punctuation; no line breaks, tabs or control "
                    f"characters), got {_describe(stage)}",
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
                self.error(
                    where,
                    "expected single-line printable text (no line breaks, tabs or control "
                    f"characters), got {_describe(value)}",
                )


STAGE_MAX = 100
PR_SAMPLES = (1, 9_999_999_999)  # pull-request numbers: the shortest, and a long one
BUILD_TEXTS = ("context", "dockerfile", "target")


def one_line(text: str) -> bool:
    """Printable characters and spaces, not blank: no line break, tab, control or invisible
    format character (a bidirectional override, say) that could change what a reader sees."""
    return text.strip() != "" and text.isprintable()
