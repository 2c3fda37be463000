"""report.py's Markdown (the job summary and the preview's PR comment) read by a CommonMark parser
with GitHub's tables: text from the pipeline file, an engine or a pull request is shown as it is
and never becomes a heading, an image, a link, an HTML tag or a table column."""

from __future__ import annotations

import dataclasses

from markdown_it import MarkdownIt
from markdown_it.token import Token

from deploy_pipeline.backends.base import StepContext, StepResult
from deploy_pipeline.errors import PermanentError
from deploy_pipeline.model import RunPlan
from deploy_pipeline.reporting.markdown import job_summary, preview_comment
from deploy_pipeline.steps import RunResult
from tests.support.runner import harness

PIPELINE = """
version: 1
stages: [data, apps]
targets:
  t: {kind: simulated}
services:
  db: {type: database, image: postgres:16, stage: data}
  api: {type: container, image: api:1, port: 8000, stage: apps}
  web: {type: container, image: nginx:1.27, port: 80, stage: apps}
environments:
  test: {target: t}
"""

# what a hostile pipeline file, engine or pull request could put in a name, a message or a URL
HOSTILE = (
    "x\n# Heading\n![img](http://evil.example/x.png) <img src=x onerror=alert(1)> "
    "[link](http://evil.example) `code` | extra | cell **bold** <!-- 1. list\n- item\n=== &lt;"
)


def hostile_result() -> RunResult:
    """A real run whose engine answers with hostile messages and URLs; then its service and stage
    names made hostile too (the file's validation is another layer; these writers stand alone)."""

    def url(ctx: StepContext) -> StepResult:
        return StepResult(message=HOSTILE, url=f"http://web/){HOSTILE}")

    def fail(ctx: StepContext) -> StepResult:
        raise PermanentError(HOSTILE)

    result = harness(PIPELINE, hooks={"web.deploy": url, "api.deploy": fail}).execute()
    steps = [
        dataclasses.replace(v, service=f"{v.service}{HOSTILE}", stage=f"{v.stage}{HOSTILE}")
        if v.service == "web"
        else v
        for v in result.steps
    ]
    return dataclasses.replace(result, steps=steps, failures=[*result.failures, HOSTILE])


def hostile_plan() -> RunPlan:
    """The run's plan with the apps stage named by a hostile file."""
    run_plan = harness(PIPELINE).run.run_plan
    plans = tuple(
        dataclasses.replace(
            plan,
            targets=tuple(
                dataclasses.replace(
                    tp,
                    stages=tuple(
                        dataclasses.replace(sp, name=f"{sp.name}{HOSTILE}")
                        if sp.name == "apps"
                        else sp
                        for sp in tp.stages
                    ),
                )
                for tp in plan.targets
            ),
        )
        for plan in run_plan.plans
    )
    return dataclasses.replace(run_plan, plans=plans)


def parsed(markdown: str) -> list[Token]:
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    flat: list[Token] = []
    for token in tokens:
        flat.append(token)
        flat.extend(token.children or [])
    return flat


def check(markdown: str, headings: int, links: set[str]) -> None:
    tokens = parsed(markdown)
    marker = "<!-- deploy-pipeline:preview:test -->"  # the comment's own, to find it again
    kinds = {t.type for t in tokens if t.content.strip() != marker}
    assert not kinds & {"image", "html_inline", "html_block"}, markdown
    assert [t.type for t in tokens].count("heading_open") == headings, markdown
    hrefs = {str(t.attrs.get("href")) for t in tokens if t.type == "link_open"}
    assert hrefs <= links, hrefs
    widths, cells = set(), 0
    for token in tokens:
        if token.type in ("th_open", "td_open"):
            cells += 1
        elif token.type == "tr_close":
            widths.add(cells)
            cells = 0
    assert widths == {6}, f"a row with a different number of cells: {widths}"
    shown = "".join(t.content for t in tokens if t.type in ("text", "code_inline"))
    assert "![img](http://evil.example/x.png) <img src=x onerror=alert(1)>" in shown
    assert "[link](http://evil.example) `code` | extra | cell **bold**" in shown


def test_hostile_text_in_the_job_summary_is_shown_literally() -> None:
    """Hostile names, messages, URLs and failures in the job summary stay text: no heading but
    the summary's own, no image, tag or foreign link, and every table row has its six cells."""
    summary = job_summary(hostile_result(), hostile_plan(), action="deploy", sha="0123456789")
    check(summary, 1, set())
    (mermaid,) = [t.content for t in parsed(summary) if t.type == "fence"]
    for line in mermaid.splitlines():  # a label's text never closes its quotes early
        assert line.count('"') in (0, 2) and "`" not in line and "<" not in line, line


def test_hostile_mermaid_labels_are_written_as_entity_codes() -> None:
    """A stage or service name with quotes, tags or backticks appears in the picture as
    Mermaid's entity codes (#34; and the like), so it stays the label's text."""
    summary = job_summary(hostile_result(), hostile_plan(), action="deploy")
    assert "#60;img src=x onerror=alert(1)#62;" in summary
    assert "#96;code#96; | extra" in summary


def test_hostile_text_in_the_preview_comment_is_shown_literally() -> None:
    """The same in the preview's PR comment: its one heading, its one run link, plain text."""
    result = hostile_result()
    run_plan = harness(PIPELINE).run.run_plan
    comment = preview_comment(
        "test", result, run_plan, action="deploy", sha="0123456789", run_url="https://run/1"
    )
    check(comment, 1, {"https://run/1"})
