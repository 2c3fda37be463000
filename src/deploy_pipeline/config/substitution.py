"""`${…}` in env values (DESIGN.md §8): `${environment}`, `${pull_request}`, `${commit}`,
`${url:SERVICE}`, and `$${` for a literal `${`. Read in one pass, so what a substitution gives
(or a literal `${`) is never read again as a substitution."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from deploy_pipeline.config.checks import NAME
from deploy_pipeline.config.problems import quote

TOKEN = re.compile(r"\$\$\{|\$\{(?P<inner>[^}]*)\}|\$\{")
VALUES = ("environment", "pull_request", "commit")
EXPECTED = (
    "expected ${environment}, ${pull_request}, ${commit} or ${url:SERVICE} "
    "(write $${ for a literal ${)"
)


def problem(text: str) -> str | None:
    """What is wrong with the substitutions of one env value, or None."""
    for m in TOKEN.finditer(text):
        inner = m.group("inner")
        if m.group(0) == "$${" or inner in VALUES:
            continue
        if inner is None:
            return f"a '${{' with no closing '}}' in {quote(text)}; " + EXPECTED
        if inner.startswith("url:") and NAME.fullmatch(inner[4:]):
            continue
        return f"unknown substitution {quote('${' + inner + '}')}; " + EXPECTED
    return None


def urls(text: str) -> list[str]:
    """The services whose URL a (well-formed) env value names, in order."""
    found = []
    for m in TOKEN.finditer(text):
        inner = m.group("inner")
        if inner is not None and inner.startswith("url:"):
            found.append(inner[4:])
    return found


def substitute(
    text: str, values: Mapping[str, str], url: Callable[[str], str | None] = lambda s: None
) -> str:
    """`text` with its substitutions made: `values` for environment, pull_request and commit,
    `url(SERVICE)` for `${url:SERVICE}`; one that is not known yet (None) is left as written."""

    def one(m: re.Match[str]) -> str:
        inner = m.group("inner")
        if m.group(0) == "$${":
            return "${"
        if inner is None:
            return m.group(0)
        if inner.startswith("url:"):
            found = url(inner[4:])
            return m.group(0) if found is None else found
        return values.get(inner, m.group(0))

    return TOKEN.sub(one, text)
