"""Whatever a pipeline file holds, `deploy-pipeline validate` answers 0 or 2 with one located
problem per line: random YAML data, mutations of a real pipeline, and raw text or bytes.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from deploy_pipeline.cli import main
from tests.support.fuzzing import fuzzing

SHOP = Path(__file__).resolve().parents[1] / "examples" / "shop" / ".deploy-pipeline.yml"
SHOP_TEXT = SHOP.read_text(encoding="utf-8")
SHOP_DATA: dict[str, Any] = yaml.safe_load(SHOP_TEXT)
# A failing example makes hypothesis import libcst (to suggest a patch), which warns through
# mypy_extensions; with warnings as errors that would hide the failure behind an INTERNALERROR.
SUMMARY = re.compile(r"^(\d+) problems? found; nothing was run$")
# The shop with settings per environment (DESIGN.md §8), so mutations reach those keys too.
_SHOP = SHOP_DATA["services"]
SETTINGS_DATA: dict[str, Any] = {
    **SHOP_DATA,
    # and the kubernetes target's own keys (DESIGN.md §11): patches of both kinds, a time zone,
    # a prebuilt image's own registry login, and the sizing keys
    "services": {
        **_SHOP,
        "report": {**_SHOP["report"], "timezone": "Europe/Paris"},
        "db": {**_SHOP["db"], "storage": "20Gi"},
        "api": {
            **_SHOP["api"],
            "resources": {"cpu": "250m", "memory": "256Mi", "limits": {"memory": "512Mi"}},
            "probes": {"period": "5s", "startup_timeout": "2m", "failure_threshold": 4},
            "security": {"run_as_root": False, "read_only": True},
            "kubernetes": {
                "patches": [
                    {"kind": "Deployment", "patch": {"spec": {"template": {"spec": {"a": 1}}}}},
                    {
                        "kind": "Service",
                        "name": "api",
                        "patch": [{"op": "replace", "path": "/spec/type", "value": "NodePort"}],
                    },
                ]
            },
        },
        "worker": {**_SHOP["worker"], "resources": {"cpu": "100m"}},
        "web": {
            **_SHOP["web"],
            "storage": {"size": "1Gi", "path": "/cache"},
            "registry_auth": {"username": "WEB_USER", "password": "WEB_TOKEN"},
        },
    },
    "environments": {
        **SHOP_DATA["environments"],
        "production": {
            "target": "laptop",
            "env": {"LOG_LEVEL": "warning", "ENV": "${environment}"},
            "services": {
                "api": {
                    "replicas": 4,
                    "env": {"DB": "${url:db}", "REV": "${commit}"},
                    "resources": {"cpu": "500m"},
                    "timeout": "2m",
                    "kubernetes": {"patches": [{"kind": "Deployment", "patch": {"spec": {}}}]},
                },
                "web": {"image": "nginx:1.28", "storage": "2Gi"},
                "db": {"storage": {"size": "50Gi"}},
                "worker": {"autoscale": {"min": 2, "max": 8, "cpu": 70}},
            },
        },
    },
    "previews": {**SHOP_DATA["previews"], "env": {"PR": "${pull_request}", "LIT": "$${x}"}},
    # DESIGN.md §11: TLS on a kubernetes target, a prebuilt image's own registry login
    "targets": {
        **SHOP_DATA["targets"],
        "eu": {
            "kind": "kubernetes",
            "domain": "{service}.{environment}.example.com",
            "tls": {"issuer": "letsencrypt"},
        },
    },
}

FAST = fuzzing(200)

# Words the pipeline file knows, so random data often lands on real keys and values.
WORDS = [
    "version",
    "services",
    "type",
    "image",
    "build",
    "context",
    "dockerfile",
    "args",
    "target",
    "stage",
    "stages",
    "targets",
    "environments",
    "skip",
    "strategy",
    "previews",
    "from",
    "name",
    "kind",
    "durations",
    "fail",
    "replicas",
    "port",
    "health",
    "secrets",
    "schedule",
    "timezone",
    "UTC",
    "0 3 * * *",
    "@daily",
    "patches",
    "patch",
    "op",
    "path",
    "value",
    "replace",
    "/spec/replicas",
    "$patch",
    "Deployment",
    "public",
    "timeout",
    "env",
    "command",
    "test",
    "defaults",
    "parallelism",
    "build_ahead",
    "retries",
    "registry",
    "production",
    "database",
    "job",
    "container",
    "application",
    "docker",
    "kubernetes",
    "simulated",
    "parallel",
    "sequential",
    "deploy",
    "restart",
    "stop",
    "delete",
    "api",
    "web",
    "db",
    "1s",
    "250ms",
    "10m",
    "0.DEFAULT DATABASE",
    "3.DEFAULT APPLICATION",
    "pr-{number}",
    "/healthz",
    "${environment}",
    "${pull_request}",
    "${commit}",
    "${url:db}",
    "${url:web}",
    "$${",
    "${nope}",
    "tls",
    "issuer",
    "secret",
    "letsencrypt",
    "registry_auth",
    "username",
    "password",
    "storage",
    "autoscale",
    "probes",
    "security",
    "resources",
    "limits",
    "cpu",
    "memory",
    "min",
    "max",
    "size",
    "path",
    "run_as_root",
    "read_only",
    "period",
    "startup_timeout",
    "20Gi",
    "512Mi",
    "250m",
]
WEIRD_TEXT = [
    "",
    " ",
    "\n",
    "a\nb",
    "\t",
    "'",
    '"',
    "\\",
    "{number}",
    "%s",
    "{}",
    "[]",
    ": ",
    "- ",
    "#",
    "&a",
    "*a",
    "!tag",
    "<<",
    "~",
    "null",
    "yes",
    "no",
    "0x1F",
    "1e400",
    "-0",
    ".nan",
    "2020-01-01",
    "é",
    "日本",
    "🚀",
    "\u2028",
    "\x00",
    "\x85",
    "\ufeff",
    "x" * 300,
]

KEYS = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.sampled_from(WEIRD_TEXT),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.sampled_from(WORDS),
    st.sampled_from(WEIRD_TEXT),
    st.text(max_size=20),
)
DATA = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=20,
)
# Characters that make YAML parsers work: indicators, quotes, indentation and line breaks.
YAML_CHARS = "abcv01: -{}[],&*!|>'\"%@`#?\t\n\r\\~.<=_é"


def dump(data: Any, flow: bool | None) -> str:
    return yaml.safe_dump(data, default_flow_style=flow, sort_keys=False, allow_unicode=True)


def places(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path inside a document, outermost first."""
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        yield (*at, key)
        yield from places(value, (*at, key))


def holder(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


@st.composite
def mutated_pipelines(draw: st.DrawFn) -> Any:
    """The shop example (with or without settings per environment) with one to four keys
    dropped, retyped, renamed or joined by junk."""
    document = copy.deepcopy(draw(st.sampled_from([SHOP_DATA, SETTINGS_DATA])))
    for _ in range(draw(st.integers(1, 4))):
        spots = list(places(document))
        if not spots:
            break
        path = draw(st.sampled_from(spots))
        parent, key = holder(document, path), path[-1]
        change = draw(st.sampled_from(["drop", "retype", "rename", "junk"]))
        if change == "drop":
            del parent[key]
        elif change == "retype":
            parent[key] = draw(DATA)
        elif change == "rename" and isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(key)
        elif isinstance(parent, dict):
            parent[draw(KEYS)] = draw(DATA)
        else:
            parent.insert(key, draw(DATA))
    return document


def check_validate(path: Path) -> None:
    """`validate` exits 0 or 2, never raises, and reports one located problem per line."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", "-f", str(path)])
    stderr = err.getvalue()
    assert code in {0, 2}, stderr
    assert "Traceback" not in stderr
    if code == 0:
        assert out.getvalue().startswith(f"✔ {path} is valid: ")
        assert stderr == ""
        return
    *located, summary = stderr.splitlines()
    count = SUMMARY.match(summary)
    assert count, stderr
    assert len(located) == int(count.group(1)), stderr
    assert all(line.startswith(f"{path}:") for line in located), stderr
    lines = [re.match(rf"{re.escape(str(path))}:(\d+):", line) for line in located]
    numbers = [int(m.group(1)) if m else 0 for m in lines]
    assert numbers == sorted(numbers), stderr


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property")


@FAST
@given(
    document=st.one_of(
        DATA,
        st.dictionaries(KEYS, DATA, max_size=6).map(lambda d: {"version": 1, **d}),
        st.dictionaries(KEYS, DATA, max_size=3).map(
            lambda d: {"version": 1, "services": d, "environments": {"dev": {}}}
        ),
    ),
    flow=st.sampled_from([None, True, False]),
)
def test_random_yaml_data_is_validated_without_crashing(
    folder: Path, document: Any, flow: bool | None
) -> None:
    """Any YAML-able data, at the top or under real keys, gets exit 0 or located problems."""
    path = folder / "random.yml"
    path.write_text(dump(document, flow), encoding="utf-8")
    check_validate(path)


@FAST
@given(document=mutated_pipelines(), flow=st.sampled_from([None, False]))
def test_mutated_pipelines_are_validated_without_crashing(
    folder: Path, document: Any, flow: bool | None
) -> None:
    """A real pipeline with keys dropped, retyped, renamed or added gets exit 0 or problems."""
    path = folder / ".deploy-pipeline.yml"
    path.write_text(dump(document, flow), encoding="utf-8")
    check_validate(path)


@FAST
@given(
    text=st.one_of(
        st.text(alphabet=YAML_CHARS, max_size=200),
        st.text(max_size=100),
        st.builds(
            lambda at, junk: SHOP_TEXT[:at] + junk + SHOP_TEXT[at:],
            st.integers(0, len(SHOP_TEXT)),
            st.text(alphabet=YAML_CHARS, min_size=1, max_size=8),
        ),
    )
)
def test_raw_text_is_validated_without_crashing(folder: Path, text: str) -> None:
    """Arbitrary text, and the shop example with junk spliced in, gets exit 0 or problems."""
    path = folder / "raw.yml"
    path.write_text(text, encoding="utf-8")
    check_validate(path)


@FAST
@given(content=st.binary(max_size=200))
def test_raw_bytes_are_validated_without_crashing(folder: Path, content: bytes) -> None:
    """Arbitrary bytes, decodable or not, get exit 0 or located problems."""
    path = folder / "bytes.yml"
    path.write_bytes(content)
    check_validate(path)


@FAST
@given(names=st.lists(st.one_of(st.text(max_size=12), st.sampled_from(WEIRD_TEXT)), min_size=1))
def test_a_pipeline_loads_only_with_single_line_printable_stage_names(
    folder: Path, names: list[str]
) -> None:
    """Whatever text names the stages, `validate` accepts the file exactly when every stage name
    is printable, on one line, not blank and at most 100 characters (it reaches logs)."""
    api = {"type": "container", "image": "x"}
    document = {"version": 1, "stages": names, "services": {"api": api}}
    path = folder / "stages.yml"
    path.write_text(dump(document, None), encoding="utf-8")
    read = yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]
    printable = all(n.strip() and n.isprintable() and len(n) <= 100 for n in read)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", "-f", str(path)])
    if len(set(read)) < len(read):  # a repeated name is its own problem
        assert code == 2
    else:
        assert code == (0 if printable else 2), err.getvalue()
    check_validate(path)


PIECES = ["${environment}", "${pull_request}", "${commit}", "${url:db}", "$${", "$", "}", "a b"]


@FAST
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=8),
    bad=st.one_of(st.none(), st.sampled_from(["${nope}", "${", "${url:web}", "${url:ghost}"])),
    where=st.sampled_from(["environment", "service", "previews"]),
)
def test_env_values_load_exactly_when_their_substitutions_are_known(
    folder: Path, pieces: list[str], bad: str | None, where: str
) -> None:
    """An env value made of known substitutions and text loads wherever it is written; one more
    unknown, unclosed or too-late `${…}` makes it a problem located at that value's key."""
    if where != "service":  # every service gets these, db too: no URL is known to all of them
        pieces = [p for p in pieces if not p.startswith("${url:")]
    value = "".join(pieces) + (" " + bad if bad else "")  # ("$" + "${x}" is a literal)
    document = copy.deepcopy(SETTINGS_DATA)
    if where == "environment":
        document["environments"]["production"]["env"]["V"] = value
        key = "environments.production.env.V"
    elif where == "service":
        document["environments"]["production"]["services"]["api"]["env"]["V"] = value
        key = "environments.production.services.api.env.V"
    else:
        document["previews"]["env"]["V"] = value
        key = "previews.env.V"
    path = folder / "settings.yml"
    path.write_text(dump(document, None), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", "-f", str(path)])
    check_validate(path)
    if bad is None:
        assert code == 0, err.getvalue()
    else:
        assert code == 2
        assert f": {key}: " in err.getvalue().splitlines()[0], err.getvalue()
