"""The pipeline file itself: a regular file of at most 1 MiB in the folder it deploys, read as one
YAML document into plain data while the line of every key and item is noted (for the messages),
within bounds on size, depth and aliases."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from deploy_pipeline.config.problems import Loc, Problems, key_path
from deploy_pipeline.errors import ConfigError, ConfigErrors

MAX_NODES = 100_000
MAX_DEPTH = 50
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


def read_yaml(text: str, problems: Problems) -> Any:
    """The plain data of a file's text; the lines of its keys and items go to `problems.lines`,
    a repeated key to `problems.errors`; what is no YAML raises ConfigErrors at once."""
    name = problems.name
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            raise ConfigErrors(
                [ConfigError(name, 1, "", "the file is empty; start with `version: 1`")]
            )
        problems.lines[()] = node.start_mark.line + 1
        return _Walker(loader, problems).value(node, ())
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

    def __init__(self, loader: yaml.SafeLoader, problems: Problems) -> None:
        self.loader, self.problems, self.count = loader, problems, 0
        self.name, self.lines = problems.name, problems.lines
        self.open: set[int] = set()  # the nodes being built: an alias to one of them is a loop

    def fail(self, line: int | None, loc: Loc, problem: str) -> ConfigErrors:
        return ConfigErrors([ConfigError(self.name, line, key_path(loc), problem)])

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
                self.problems.errors.append(
                    ConfigError(
                        self.name,
                        line,
                        key_path((*loc, key)),
                        f"duplicate key (first set at line {first}); keep one",
                    )
                )
                continue
            self.lines[(*loc, key)] = line
            result[key] = self.value(value_node, (*loc, key))
        return result
