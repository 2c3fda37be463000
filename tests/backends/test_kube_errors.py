"""Kubernetes API errors mapped at the boundary: what is retried, what fails at once, and what
a user reads (the API's message, short), without a cluster."""

from __future__ import annotations

import json

import pytest
import urllib3
from kubernetes.client import ApiException

from deploy_pipeline.backends.kube import ApplyConflict, mapped
from deploy_pipeline.errors import PermanentError, TransientError


def api_error(
    status: int, message: str, causes: list[dict[str, str]] | None = None
) -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.body = json.dumps(
        {"kind": "Status", "message": message, "details": {"causes": causes or []}}
    )
    return exc


@pytest.mark.parametrize("status", [500, 503, 429, 409])
def test_server_errors_throttling_and_update_conflicts_are_transient(status: int) -> None:
    """5xx, 429 and a 409 on update are retried: they are TransientError."""
    with (
        pytest.raises(
            TransientError, match=r"applying Deployment/api: .*the object has been modified"
        ),
        mapped("applying Deployment/api"),
    ):
        raise api_error(status, "the object has been modified; please apply your changes")


def test_a_validation_error_fails_at_once_with_the_apis_message_truncated() -> None:
    """A 422 is permanent, says what the API said, and a huge body is cut short."""
    with pytest.raises(PermanentError) as err, mapped("applying Deployment/api"):
        raise api_error(422, 'Deployment.apps "api" is invalid: ' + "x" * 5000)
    text = str(err.value)
    assert text.startswith('applying Deployment/api: Deployment.apps "api" is invalid: xxx')
    assert len(text) < 700 and text.endswith("more characters)")
    assert not isinstance(err.value, TransientError)


def test_an_apply_conflict_names_the_managers_that_own_the_fields() -> None:
    """Server-side apply conflicts are not retried; they carry who owns the fields."""
    causes = [{"message": 'conflict with "kubectl-edit" using apps/v1', "field": ".spec.replicas"}]
    with pytest.raises(ApplyConflict) as err, mapped("applying Deployment/api"):
        raise api_error(409, 'Apply failed with 1 conflict: conflict with "kubectl-edit"', causes)
    assert err.value.managers == {"kubectl-edit"}


def test_an_unreachable_api_server_is_transient_and_says_so_briefly() -> None:
    """Connection refused is retried, and the message drops urllib3's connection repr."""
    reason = urllib3.exceptions.NewConnectionError(
        None,
        "HTTPSConnection(host='127.0.0.1', port=6443): Failed to establish a new connection: "
        "[Errno 111] Connection refused",
    )
    with pytest.raises(TransientError) as err, mapped("reading Deployment/api"):
        raise urllib3.exceptions.MaxRetryError(None, "/apis", reason)  # type: ignore[arg-type]
    assert str(err.value) == (
        "reading Deployment/api: cannot reach the Kubernetes API: "
        "Failed to establish a new connection: [Errno 111] Connection refused"
    )
