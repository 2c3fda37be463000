"""Webhook deliveries without I/O: the signature is checked before anything is read, a delivery is
read as GitHub sends it, and a pull_request event becomes deploy, delete or ignore. Every payload
is a recorded real one or an edited copy that GitHub's own schemas accept.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from deploy_pipeline.errors import DeployPipelineError, PayloadError, SignatureError
from deploy_pipeline.previews import Decision, PreviewPolicy, decide, in_sequence, pull_request
from deploy_pipeline.webhooks import MAX_BODY, Delivery, verify
from tests.support.fuzzing import fuzzing
from tests.support.webhooks import SECRET  # GitHub's documented test vector's

FIXTURES = Path(__file__).parent / "fixtures" / "github-webhooks"
SCHEMAS = Registry().with_resources(
    (schema["$id"], DRAFT7.create_resource(schema))
    for schema in (
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((FIXTURES / "schemas").rglob("*.schema.json"))
    )
)
GUID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
HEAD_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"  # the recorded PR #2's head commit
ON = PreviewPolicy(enabled=True)
LABELLED = PreviewPolicy(enabled=True, label="preview")
ALIGN = "payload's signature does not align with the secret"
MALFORMED = "not sha256= and 64 hex digits"

FAST = fuzzing(200)


def recorded(name: str) -> dict[str, Any]:
    """A fresh copy of a recorded payload, to edit."""
    payload: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return payload


def as_github_sends(payload: Mapping[str, Any], event: str) -> None:
    """Fail the test unless GitHub's schema for this event and action accepts the payload."""
    schema = f"{event}${payload['action']}" if event == "pull_request" else f"{event}$event"
    validator = Draft7Validator(SCHEMAS.contents(schema), registry=SCHEMAS)
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(payload)]
    assert not problems, f"GitHub would not send this {schema}: {problems}"


def pr_payload(
    action: str = "opened",
    *,
    number: int | None = None,
    draft: bool | None = None,
    fork: str | None = None,
    deleted_fork: bool = False,
    labels: Sequence[str] | None = None,
    label: str | None = None,
    merged: bool = False,
) -> dict[str, Any]:
    """A recorded pull_request payload (PR #2, labelled `bug`) edited into another GitHub could
    send: another action or number, a draft, a fork's head, other labels."""
    source = action if action in ("opened", "synchronize", "closed") else "opened"
    payload = recorded(f"pull_request/{source}.payload.json")
    pr = payload["pull_request"]
    payload["action"] = action
    if number is not None:
        payload["number"] = pr["number"] = number
    if draft is not None:
        pr["draft"] = draft
    if fork is not None:
        owner, _, name = fork.partition("/")
        repo = pr["head"]["repo"]
        repo["full_name"], repo["name"], repo["owner"]["login"] = fork, name, owner
        pr["head"]["label"] = f"{owner}:{pr['head']['ref']}"
    if deleted_fork:
        pr["head"]["repo"] = None
    bug = pr["labels"][0]
    if labels is not None:
        pr["labels"] = [{**bug, "name": name, "id": bug["id"] + i} for i, name in enumerate(labels)]
    if label is not None:  # labeled / unlabeled name the label that changed
        payload["label"] = {**bug, "name": label}
    if action == "edited":
        payload["changes"] = {"title": {"from": pr["title"]}}
    if merged:
        pr["merged"], pr["merged_at"] = True, pr["closed_at"]
    as_github_sends(payload, "pull_request")
    return payload


def sign(body: bytes, secret: str = SECRET) -> str:
    """X-Hub-Signature-256 as GitHub computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(event: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The headers GitHub sends with a delivery (README.md), the body signed with the secret."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Delivery": GUID,
        "X-GitHub-Event": event,
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Hook-Installation-Target-ID": "186853002",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": sign(body, secret),
    }


def deliver(payload: Mapping[str, Any], event: str = "pull_request") -> Delivery:
    body = json.dumps(payload).encode()
    return Delivery.from_http(github_headers(event, body), body, SECRET)


def decision_for(payload: Mapping[str, Any], policy: PreviewPolicy = ON) -> Decision:
    return decide(deliver(payload), policy)


# -- the signature


def test_githubs_documented_test_vector_verifies() -> None:
    """GitHub's documented secret, body and signature verify, and our test signer agrees."""
    vector = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    verify(b"Hello, World!", vector, "It's a Secret to Everybody")
    assert sign(b"Hello, World!", "It's a Secret to Everybody") == vector


def test_a_delivery_without_a_signature_is_refused() -> None:
    """A delivery with no X-Hub-Signature-256 header raises SignatureError saying so."""
    body = (FIXTURES / "ping" / "payload.json").read_bytes()
    headers = github_headers("ping", body)
    del headers["X-Hub-Signature-256"]
    with pytest.raises(SignatureError, match="no X-Hub-Signature-256 header"):
        Delivery.from_http(headers, body, SECRET)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "sha256=",
        "sha256",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha1=5d61605c3feea9799210ddcb71307d4ba264225f",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17aa",
        "sha256=z57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17, sha256=00",
    ],
)
def test_a_malformed_signature_is_refused(header: str) -> None:
    """A header that is not `sha256=` and 64 hex digits raises SignatureError quoting it."""
    with pytest.raises(SignatureError, match=MALFORMED) as caught:
        verify(b"Hello, World!", header, "It's a Secret to Everybody")
    assert repr(header)[:40] in str(caught.value)


def test_a_signature_made_with_another_secret_is_refused() -> None:
    """A recorded delivery signed with another secret does not align with ours."""
    body = (FIXTURES / "pull_request" / "opened.payload.json").read_bytes()
    headers = github_headers("pull_request", body, secret="another secret")
    with pytest.raises(SignatureError, match=ALIGN):
        Delivery.from_http(headers, body, SECRET)


def test_a_body_altered_after_signing_is_refused() -> None:
    """Changing the head commit of a signed delivery's body breaks its signature."""
    body = (FIXTURES / "pull_request" / "opened.payload.json").read_bytes()
    headers = github_headers("pull_request", body)
    altered = body.replace(HEAD_SHA.encode(), b"0" * 40)
    assert altered != body
    with pytest.raises(SignatureError, match=ALIGN):
        Delivery.from_http(headers, altered, SECRET)


def test_the_signature_is_checked_before_the_body_or_headers_are_read() -> None:
    """A wrongly signed delivery that is also not JSON and has no event header raises
    SignatureError, not PayloadError: nothing unsigned is parsed."""
    body = b"payload=%7B%22zen%22%3A%22hi%22%7D"
    headers = {"X-Hub-Signature-256": sign(body, "another secret")}
    with pytest.raises(SignatureError, match=ALIGN):
        Delivery.from_http(headers, body, SECRET)


def test_an_empty_secret_refuses_every_delivery() -> None:
    """With no secret configured even a delivery signed with the empty key is refused."""
    body = (FIXTURES / "ping" / "payload.json").read_bytes()
    with pytest.raises(SignatureError, match="no webhook secret is configured"):
        Delivery.from_http(github_headers("ping", body, secret=""), body, "")


# -- the delivery


def test_a_recorded_delivery_is_read_with_its_id_event_and_payload() -> None:
    """The recorded bytes of an opened pull request, signed, give GitHub's GUID, the event and
    the parsed payload."""
    body = (FIXTURES / "pull_request" / "opened.payload.json").read_bytes()
    delivery = Delivery.from_http(github_headers("pull_request", body), body, SECRET)
    assert delivery == Delivery(id=GUID, event="pull_request", payload=json.loads(body))


@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_header_names_are_matched_in_any_case(case: Any) -> None:
    """Headers named in lower case (as ASGI gives them) or upper case are found all the same."""
    body = (FIXTURES / "ping" / "payload.json").read_bytes()
    headers = {case(name): value for name, value in github_headers("ping", body).items()}
    delivery = Delivery.from_http(headers, body, SECRET)
    assert (delivery.id, delivery.event) == (GUID, "ping")


@pytest.mark.parametrize(
    "body",
    [
        b"payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%7D",  # a form-encoded webhook
        b"",
        (FIXTURES / "ping" / "payload.json").read_bytes()[:-3],
        b"\xff\xfe{\x00}",
        b"[" * 100_000,  # deeper than the parser recurses
    ],
    ids=["form-encoded", "empty", "truncated", "not-utf8", "too-deep"],
)
def test_a_signed_body_that_is_not_json_is_a_payload_error(body: bytes) -> None:
    """A correctly signed body that does not parse as JSON raises PayloadError saying so."""
    with pytest.raises(PayloadError, match="not JSON"):
        Delivery.from_http(github_headers("ping", body), body, SECRET)


@pytest.mark.parametrize("wrap", [lambda p: [p], lambda p: p["zen"], lambda p: None])
def test_a_signed_json_body_that_is_not_an_object_is_a_payload_error(wrap: Any) -> None:
    """A JSON array (the recorded ping in a list), a string or null is no GitHub event."""
    body = json.dumps(wrap(recorded("ping/payload.json"))).encode()
    with pytest.raises(PayloadError, match="not the object of a GitHub event"):
        Delivery.from_http(github_headers("ping", body), body, SECRET)


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
@pytest.mark.parametrize("missing", ["absent", "empty"])
def test_a_delivery_without_its_event_or_guid_is_a_payload_error(header: str, missing: str) -> None:
    """A signed delivery whose X-GitHub-Event or X-GitHub-Delivery is absent or empty raises
    PayloadError naming the header."""
    body = (FIXTURES / "ping" / "payload.json").read_bytes()
    headers = github_headers("ping", body)
    if missing == "absent":
        del headers[header]
    else:
        headers[header] = ""
    with pytest.raises(PayloadError, match=f"no {header} header"):
        Delivery.from_http(headers, body, SECRET)


def test_a_body_over_the_limit_is_a_payload_error() -> None:
    """A body longer than the 25 MiB GitHub sends at most is refused before it is hashed."""
    body = b" " * (MAX_BODY + 1)
    with pytest.raises(PayloadError, match="over the"):
        Delivery.from_http({"X-Hub-Signature-256": "sha256=" + "0" * 64}, body, SECRET)


# -- what a delivery asks for


def test_a_ping_is_ignored() -> None:
    """The ping GitHub sends when a webhook is created is ignored, reason `ping`."""
    body = (FIXTURES / "ping" / "payload.json").read_bytes()
    delivery = Delivery.from_http(github_headers("ping", body), body, SECRET)
    assert decide(delivery, ON) == Decision("ignore", "ping")


def test_events_other_than_pull_request_are_ignored() -> None:
    """A recorded push is ignored, and the reason names the event."""
    decision = decide(deliver(recorded("push/with-new-branch.payload.json"), "push"), ON)
    assert (decision.action, decision.pull_request) == ("ignore", None)
    assert decision.reason.startswith("push event")


@pytest.mark.parametrize("action", ["opened", "reopened", "synchronize", "ready_for_review"])
def test_a_pull_request_opened_or_pushed_deploys_its_preview_at_the_head(action: str) -> None:
    """opened, reopened, synchronize and ready_for_review deploy pr-2 at the PR's head commit."""
    decision = decision_for(pr_payload(action))
    assert (decision.action, decision.environment, decision.sha) == ("deploy", "pr-2", HEAD_SHA)
    assert decision.pull_request is not None
    assert decision.pull_request.number == 2
    assert decision.reason.startswith(f"pull request #2 {action}: deploys pr-2")


def test_the_preview_name_comes_from_the_policy() -> None:
    """previews.name's {number} is replaced by the PR's number."""
    decision = decision_for(pr_payload(number=17), PreviewPolicy(True, name="review-{number}-x"))
    assert decision.environment == "review-17-x"


@pytest.mark.parametrize(
    "payload",
    [
        pr_payload("closed"),
        pr_payload("closed", merged=True),
        pr_payload("closed", draft=True),
        pr_payload("closed", fork="other/Hello-World"),
        pr_payload("closed", deleted_fork=True),
        pr_payload("closed", labels=[]),
    ],
    ids=["closed", "merged", "draft", "fork", "deleted-fork", "unlabelled"],
)
def test_a_closed_pull_request_deletes_its_preview_whatever_the_policy(
    payload: dict[str, Any],
) -> None:
    """closed (merged or not) deletes the preview even for a draft, a fork or an unlabelled PR
    under the strictest policy: cleaning up is always safe."""
    decision = decision_for(payload, LABELLED)
    assert (decision.action, decision.environment, decision.sha) == ("delete", "pr-2", HEAD_SHA)


@pytest.mark.parametrize("action", ["edited", "converted_to_draft"])
def test_other_pull_request_actions_leave_the_preview_alone(action: str) -> None:
    """edited and converted_to_draft are ignored with a reason that says so."""
    payload = pr_payload(action, draft=True if action == "converted_to_draft" else None)
    decision = decision_for(payload)
    assert decision.action == "ignore"
    assert decision.reason == f"pull request #2 {action}: leaves the preview alone"


@pytest.mark.parametrize("action", ["labeled", "unlabeled"])
def test_labels_do_nothing_when_previews_need_no_label(action: str) -> None:
    """labeled and unlabeled are ignored when previews.label is not set."""
    decision = decision_for(pr_payload(action, label="preview", labels=["preview"]))
    assert decision.action == "ignore"
    assert "previews.label is not set" in decision.reason


def test_labelling_a_pull_request_with_the_label_deploys_its_preview() -> None:
    """labeled with previews.label deploys the preview at the head."""
    payload = pr_payload("labeled", label="preview", labels=["bug", "preview"])
    decision = decision_for(payload, LABELLED)
    assert (decision.action, decision.environment, decision.sha) == ("deploy", "pr-2", HEAD_SHA)


def test_removing_the_label_deletes_the_preview() -> None:
    """unlabeled with previews.label deletes the preview, even of a draft or a fork's PR."""
    for payload in (
        pr_payload("unlabeled", label="preview", labels=["bug"]),
        pr_payload("unlabeled", label="preview", labels=[], draft=True, fork="other/Hello-World"),
    ):
        decision = decision_for(payload, LABELLED)
        assert (decision.action, decision.environment) == ("delete", "pr-2")


@pytest.mark.parametrize("action", ["labeled", "unlabeled"])
def test_other_labels_leave_the_preview_alone(action: str) -> None:
    """Adding or removing a label other than previews.label is ignored, naming both labels."""
    decision = decision_for(pr_payload(action, label="wontfix", labels=["preview"]), LABELLED)
    assert decision.action == "ignore"
    assert "'wontfix'" in decision.reason
    assert "'preview'" in decision.reason


@pytest.mark.parametrize("action", ["opened", "reopened", "synchronize", "ready_for_review"])
def test_with_a_label_set_only_labelled_pull_requests_get_a_preview(action: str) -> None:
    """Under previews.label an unlabelled PR is ignored (reason naming the label) and a PR that
    carries the label deploys."""
    unlabelled = decision_for(pr_payload(action), LABELLED)  # carries only `bug`
    assert unlabelled.action == "ignore"
    assert "without the label 'preview'" in unlabelled.reason
    labelled = decision_for(pr_payload(action, labels=["bug", "preview"]), LABELLED)
    assert (labelled.action, labelled.sha) == ("deploy", HEAD_SHA)


@pytest.mark.parametrize("action", ["opened", "reopened", "synchronize"])
def test_a_draft_waits_for_ready_for_review(action: str) -> None:
    """A draft PR is ignored (reason naming previews.drafts) unless previews.drafts is true."""
    payload = pr_payload(action, draft=True)
    decision = decision_for(payload)
    assert decision.action == "ignore"
    assert decision.reason == (
        "pull request #2 is a draft: waits for ready_for_review (previews.drafts is false)"
    )
    assert decision_for(payload, PreviewPolicy(True, drafts=True)).action == "deploy"


def test_labelling_a_draft_does_not_deploy_it() -> None:
    """The draft rule holds for labeled too: labelling a draft with the label is ignored."""
    payload = pr_payload("labeled", label="preview", labels=["preview"], draft=True)
    assert decision_for(payload, LABELLED).action == "ignore"
    assert decision_for(payload, PreviewPolicy(True, label="preview", drafts=True)).action == (
        "deploy"
    )


@pytest.mark.parametrize("action", ["opened", "synchronize", "labeled"])
def test_a_pull_request_from_a_fork_gets_no_preview_unless_forks_are_allowed(
    action: str,
) -> None:
    """A PR whose head is in another repository is ignored (reason naming the fork and
    previews.forks) unless previews.forks is true."""
    label = "preview" if action == "labeled" else None
    payload = pr_payload(action, fork="other/Hello-World", labels=["preview"], label=label)
    decision = decision_for(payload, LABELLED)
    assert decision.action == "ignore"
    assert decision.reason == (
        "pull request #2 is from a fork (other/Hello-World): no preview (previews.forks is false)"
    )
    allowed = PreviewPolicy(True, label="preview", forks=True)
    assert decision_for(payload, allowed).action == "deploy"


def test_a_pull_request_from_a_deleted_fork_gets_no_preview() -> None:
    """A PR whose head repository is null (its fork deleted) counts as a fork."""
    decision = decision_for(pr_payload("synchronize", deleted_fork=True))
    assert decision.action == "ignore"
    assert "a deleted fork" in decision.reason


@pytest.mark.parametrize("action", ["opened", "closed"])
def test_without_previews_pull_requests_are_ignored(action: str) -> None:
    """With no previews: in the pipeline file, even opened and closed are ignored."""
    decision = decision_for(pr_payload(action), PreviewPolicy(enabled=False))
    assert decision == Decision("ignore", "no previews: in the pipeline file")


def test_a_signed_pull_request_event_without_a_head_is_a_payload_error() -> None:
    """A pull_request delivery lacking what a preview needs raises PayloadError, not a
    UsageError meant for the command line."""
    payload = recorded("pull_request/opened.payload.json")
    del payload["pull_request"]["head"]
    with pytest.raises(PayloadError, match="lacks what a preview needs: KeyError"):
        decision_for(payload)


def test_the_pull_request_reads_draft_fork_and_labels_from_the_recorded_payload() -> None:
    """pull_request() reads the recorded PR #2 as not a draft, not from a fork, labelled bug."""
    pr = pull_request(recorded("pull_request/opened.payload.json"))
    assert (pr.draft, pr.fork, pr.labels, pr.label) == (False, False, frozenset({"bug"}), None)
    assert pr.head_repository == pr.base_repository == "Codertocat/Hello-World"


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        (2.7, "2.7"),  # int() made it #2: another pull request's preview
        (2.0, "2.0"),
        (-5, "-5"),  # gave pr--5
        (0, "0"),
        ("3", "'3'"),
        (True, "True"),
        (10**40, "1" + "0" * 40),  # overflowed the database's integer: a 500
        (2**31, str(2**31)),
    ],
)
def test_a_pull_request_number_is_a_positive_json_integer(number: object, shown: str) -> None:
    """A number that is not a JSON integer from 1 to 2^31-1 (a float, a string, a boolean, 0,
    a negative one, one no database column holds) is a PayloadError naming it, not a preview."""
    payload = recorded("pull_request/opened.payload.json")
    payload["number"] = payload["pull_request"]["number"] = number
    with pytest.raises(PayloadError, match="whole number from 1 to 2147483647") as caught:
        decision_for(payload)
    assert f"the pull request number is {shown}" in str(caught.value)


def test_a_number_that_differs_from_the_pull_requests_own_is_a_payload_error() -> None:
    """`number` and `pull_request.number` name one pull request; two say the payload is not
    GitHub's."""
    payload = recorded("pull_request/opened.payload.json")
    payload["number"] = 3
    with pytest.raises(PayloadError, match=r"is 3 but pull_request\.number is 2"):
        decision_for(payload)


def test_labelling_a_closed_pull_request_does_not_deploy_it() -> None:
    """`labeled` with the previews label on a pull request that is closed is ignored: the
    close deleted its preview and only a reopen brings it back."""
    payload = recorded("pull_request/closed.payload.json")
    payload["action"] = "labeled"
    payload["label"] = {**payload["pull_request"]["labels"][0], "name": "preview"}
    as_github_sends(payload, "pull_request")
    decision = decision_for(payload, LABELLED)
    assert decision.action == "ignore"
    assert decision.reason == "pull request #2 is closed: labeled does not bring its preview back"


def test_a_repository_not_served_is_ignored() -> None:
    """With the served repository set, a pull_request of another one is ignored, saying which;
    the served one's is decided as before, its name matched in any case."""
    served = PreviewPolicy(enabled=True, repository="codertocat/hello-world")
    assert decision_for(pr_payload("closed"), served).action == "delete"
    other = PreviewPolicy(enabled=True, repository="octo-org/app")
    decision = decision_for(pr_payload("closed"), other)
    assert decision == Decision(
        "ignore",
        "repository Codertocat/Hello-World is not served here (this receiver serves "
        "octo-org/app: DEPLOY_PIPELINE_REPOSITORY)",
    )


def sequence(
    action: str, updated_at: str, repository: tuple[int, str] | None = None
) -> dict[str, Any]:
    """The recorded PR #2 as `action` delivered it when the pull request changed at
    `updated_at`, of the recorded repository or of another (id, owner/name)."""
    payload = pr_payload(action)
    payload["pull_request"]["updated_at"] = updated_at
    if repository is not None:
        payload["repository"]["id"], payload["repository"]["full_name"] = repository
    return payload


OPENED, CLOSED, REOPENED = "2019-05-15T15:20:33Z", "2019-05-15T15:21:18Z", "2019-05-15T15:22:00Z"


@pytest.mark.parametrize(
    ("last", "now", "taken"),
    [
        (None, sequence("opened", OPENED), "deploy"),  # nothing before: as decided
        (sequence("opened", OPENED), sequence("synchronize", REOPENED), "deploy"),
        (sequence("opened", OPENED), sequence("closed", CLOSED), "delete"),
        (sequence("closed", CLOSED), sequence("reopened", REOPENED), "deploy"),
        (sequence("closed", CLOSED), sequence("closed", CLOSED), "delete"),
        # a signed `opened` sent again under a new delivery id after the close
        (sequence("closed", CLOSED), sequence("opened", OPENED), "ignore"),
        # a `reopened` from before the close, sent again
        (sequence("closed", CLOSED), sequence("reopened", OPENED), "ignore"),
        # a push after the close: the pull request was reopened (as a draft, or without the
        # label, so that the reopen itself was ignored)
        (sequence("closed", CLOSED), sequence("synchronize", REOPENED), "deploy"),
        (sequence("closed", CLOSED), sequence("ready_for_review", REOPENED), "deploy"),
        # not after the close: only a reopen follows it
        (sequence("closed", CLOSED), sequence("synchronize", CLOSED), "ignore"),
        # an old `closed` sent again while the pull request is open again
        (sequence("reopened", REOPENED), sequence("closed", CLOSED), "ignore"),
        # a renamed repository keeps its id
        (sequence("opened", OPENED), sequence("closed", CLOSED, (186853002, "a/b")), "delete"),
        # another repository's pull request #2
        (sequence("opened", OPENED), sequence("closed", CLOSED, (1, "a/b")), "ignore"),
    ],
)
def test_a_delivery_is_taken_in_sequence_with_the_last_one_taken_for_its_preview(
    last: dict[str, Any] | None, now: dict[str, Any], taken: str
) -> None:
    """A delivery is ignored when the last one taken for its preview is another repository's,
    is newer (a replay or a late delivery), or closed the pull request and this is neither a
    reopen nor newer than the close; else it stands as decided."""
    assert in_sequence(decision_for(now), last).action == taken


def test_a_delivery_out_of_sequence_says_why() -> None:
    """The reasons name the other repository, the two times, or the close."""
    opened, closed = sequence("opened", OPENED), sequence("closed", CLOSED)
    assert in_sequence(decision_for(closed), sequence("opened", OPENED, (1, "a/b"))).reason == (
        "pull request #2 of Codertocat/Hello-World: pr-2 is the preview of a/b's pull request "
        "#2, and a delivery of another repository never touches it"
    )
    assert in_sequence(decision_for(opened), closed).reason == (
        "pull request #2 opened: this delivery is of 2019-05-15 15:20:33, older than the closed "
        "of 2019-05-15 15:21:18 already taken (a replayed or late delivery changes nothing)"
    )
    assert in_sequence(decision_for(sequence("opened", CLOSED)), closed).reason == (
        "pull request #2 was closed: opened does not bring its preview back (only reopening it "
        "does)"
    )


# -- fuzz

GITHUB_HEADERS = [
    "X-Hub-Signature-256",
    "x-hub-signature-256",
    "X-GitHub-Event",
    "x-github-event",
    "X-GitHub-Delivery",
    "X-GITHUB-DELIVERY",
    "Content-Type",
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
HEADERS = st.dictionaries(
    st.sampled_from(GITHUB_HEADERS) | st.text(max_size=20),
    st.sampled_from(["pull_request", "ping", "push", GUID, "sha256=" + "a" * 64])
    | st.text(max_size=80),
    max_size=8,
)
POLICIES = st.builds(
    PreviewPolicy,
    enabled=st.booleans(),
    name=st.sampled_from(["pr-{number}", "preview-{number}"]) | st.text(max_size=12),
    label=st.none() | st.sampled_from(["bug", "preview"]),
    drafts=st.booleans(),
    forks=st.booleans(),
)
REMOVE = object()  # an edit that deletes the key
ACTIONS = ["opened", "reopened", "synchronize", "ready_for_review", "closed", "labeled", "edited"]
# places in a pull_request payload that decide reads, or that hold what it reads
PLACES: list[tuple[str, ...]] = [
    ("action",),
    ("number",),
    ("label",),
    ("label", "name"),
    ("repository",),
    ("repository", "full_name"),
    ("pull_request",),
    ("pull_request", "number"),
    ("pull_request", "draft"),
    ("pull_request", "merged"),
    ("pull_request", "labels"),
    ("pull_request", "head"),
    ("pull_request", "head", "sha"),
    ("pull_request", "head", "ref"),
    ("pull_request", "head", "repo"),
    ("pull_request", "head", "repo", "full_name"),
    ("pull_request", "base"),
    ("pull_request", "base", "repo"),
    ("pull_request", "base", "repo", "full_name"),
]


def well_formed(decision: Decision) -> None:
    assert decision.action in ("deploy", "delete", "ignore")
    assert decision.reason
    if decision.action != "ignore":
        assert decision.pull_request is not None
        assert decision.environment is not None
        assert decision.sha is not None


@FAST
@given(headers=HEADERS, body=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_random_headers_and_bodies_raise_only_signature_or_payload_errors(
    headers: dict[str, str], body: bytes
) -> None:
    """Whatever headers and body arrive, from_http raises SignatureError or PayloadError and
    nothing else."""
    with contextlib.suppress(SignatureError, PayloadError):
        Delivery.from_http(headers, body, SECRET)


@FAST
@given(
    headers=HEADERS,
    event=st.sampled_from(["pull_request", "ping", "push"]) | st.text(max_size=12),
    body=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()),
    policy=POLICIES,
)
def test_signed_random_bodies_are_decided_or_refused_as_payload_errors(
    headers: dict[str, str], event: str, body: bytes, policy: PreviewPolicy
) -> None:
    """Correctly signed random bodies and headers are read and decided, or raise PayloadError;
    nothing else escapes."""
    ours = github_headers(event, body)
    # a random header in another case must not stand in for our signature
    signed = {k: v for k, v in headers.items() if k.lower() not in {o.lower() for o in ours}}
    signed.update(ours)
    with contextlib.suppress(PayloadError):
        well_formed(decide(Delivery.from_http(signed, body, SECRET), policy))


@FAST
@given(
    source=st.sampled_from(["opened", "synchronize", "closed"]),
    action=st.sampled_from(ACTIONS) | st.text(max_size=12),
    edits=st.lists(st.tuples(st.sampled_from(PLACES), st.just(REMOVE) | JSON), max_size=3),
    policy=POLICIES,
)
# JSON's Infinity and NaN parse to floats that int() refuses with OverflowError and ValueError
@example(source="opened", action="opened", edits=[(("number",), float("inf"))], policy=ON)
@example(source="opened", action="opened", edits=[(("number",), float("nan"))], policy=ON)
@example(source="closed", action="labeled", edits=[(("label",), "preview")], policy=LABELLED)
def test_signed_edits_of_a_recorded_pull_request_are_decided_or_payload_errors(
    source: str,
    action: str,
    edits: list[tuple[tuple[str, ...], Any]],
    policy: PreviewPolicy,
) -> None:
    """A recorded pull_request with the places decide reads replaced or removed is decided into
    a well-formed Decision or raises PayloadError; nothing else escapes."""
    payload = recorded(f"pull_request/{source}.payload.json")
    payload["action"] = action
    for (*parents, key), value in edits:
        holder: Any = payload
        for parent in parents:
            holder = holder.get(parent) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            if value is REMOVE:
                holder.pop(key, None)
            else:
                holder[key] = value
    with contextlib.suppress(PayloadError):
        well_formed(decision_for(payload, policy))


def test_our_errors_belong_to_the_one_tree() -> None:
    """SignatureError and PayloadError are DeployPipelineErrors, so the receiver's one handler
    catches them."""
    assert issubclass(SignatureError, DeployPipelineError)
    assert issubclass(PayloadError, DeployPipelineError)


@pytest.mark.parametrize(
    ("encoded", "kept"),
    [
        (b'{"zen": "Keep it logically awesome. \xe2\x9c\xa8"}', True),  # UTF-8, as GitHub sends
        (b'\xef\xbb\xbf{"zen": "with a BOM"}', True),
        ('{"zen": "UTF-16"}'.encode("utf-16"), False),
    ],
)
def test_the_body_is_kept_as_received_when_it_is_utf8(encoded: bytes, kept: bool) -> None:
    """A delivery's text (what the queue stores rather than serialising again) parses back to
    its payload; a body json.loads reads but that is not UTF-8 has no text, so the payload is
    serialised instead."""
    delivery = Delivery.from_http(github_headers("ping", encoded), encoded, SECRET)
    if kept:
        assert delivery.text is not None
        assert json.loads(delivery.text) == delivery.payload
    else:
        assert delivery.text is None
