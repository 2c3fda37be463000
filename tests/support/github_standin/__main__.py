"""The GitHub stand-in as a process of its own, to try the receiver by hand as the README's "Run
the receiver" says, with no GitHub: `python -m tests.support.github_standin --port 9900 --repo DIR`.

It registers a GitHub App installed on the repository (its private key written beside `--out`),
commits DIR's files to the default branch and, changed by `--change`, to a `feature` branch with a
pull request open, then prints the environment for `deploy-pipeline serve` and a signed `opened`
delivery to send with curl. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import signal
import threading
import uuid
from pathlib import Path

from tests.support.github_standin import REPO, GitHubStandin
from tests.support.paths import WEBHOOKS

OPENED = WEBHOOKS / "pull_request"


def files_of(folder: Path) -> tuple[dict[str, bytes], list[str]]:
    found = {
        str(f.relative_to(folder)): f.read_bytes()
        for f in sorted(folder.rglob("*"))
        if f.is_file() and ".deploy-pipeline" not in f.parts and ".git" not in f.parts
    }
    executable = [name for name in found if (folder / name).stat().st_mode & 0o111]
    return found, executable


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.github_standin")
    parser.add_argument("--port", type=int, default=9900)
    parser.add_argument("--repo", type=Path, required=True, help="the repository's files")
    parser.add_argument(
        "--change",
        action="append",
        default=[],
        metavar="PATH=TEXT",
        help="what the pull request changes",
    )
    parser.add_argument("--out", type=Path, default=Path("standin"), help="folder for the key")
    parser.add_argument("--secret", default="a-webhook-secret", help="the webhook's secret")
    args = parser.parse_args()
    standin = GitHubStandin().start(args.port)
    app = standin.add_app()
    files, executable = files_of(args.repo)
    standin.add_repository_files(files, executable=executable, message="the repository")
    changes = dict(c.split("=", 1) for c in args.change) or {"CHANGES": "a change"}
    head = standin.add_repository_files(changes, branch="feature", message="the pull request")
    number = standin.add_pull("feature", head_sha=head)
    args.out.mkdir(parents=True, exist_ok=True)
    key = args.out / "app.pem"
    key.write_text(app.private_key)
    key.chmod(0o600)
    data = json.loads((OPENED / "opened.payload.json").read_text())
    data["number"] = data["pull_request"]["number"] = number
    data["pull_request"]["head"]["sha"] = head
    data["repository"]["full_name"] = REPO
    body = json.dumps(data).encode()
    (args.out / "opened.json").write_bytes(body)
    digest = hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
    print(
        f"""GitHub stand-in at {standin.base_url}: {REPO}, pull request #{number} at {head[:7]}

export GITHUB_API_URL={standin.base_url}
export GITHUB_APP_ID={app.id}
export GITHUB_APP_PRIVATE_KEY_FILE={key}
export DEPLOY_PIPELINE_WEBHOOK_SECRET={args.secret}

curl -sS http://127.0.0.1:8080/webhooks/github -H 'Content-Type: application/json' \\
  -H 'X-GitHub-Event: pull_request' -H 'X-GitHub-Delivery: {uuid.uuid4()}' \\
  -H 'X-Hub-Signature-256: sha256={digest}' --data-binary @{args.out / "opened.json"}
""",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    standin.stop()
    print("What GitHub was sent:")
    for status in standin.statuses(head):
        print(f"  status {status['context']}: {status['state']} — {status['description']}")
    for deployment in standin.deployments():
        states = [s["state"] for s in standin.deployment_statuses(deployment["id"])]
        print(f"  deployment {deployment['environment']}: {' → '.join(states)}")
    for comment in standin.comments(number):
        print("  comment:\n" + "\n".join(f"    {line}" for line in comment["body"].splitlines()))
    print(f"  violations of GitHub's description: {len(standin.violations)}")


if __name__ == "__main__":
    main()
