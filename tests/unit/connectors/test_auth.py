"""Delivery authentication: GitHub's published test vector, tokens, and no secret at all."""

from __future__ import annotations

from connectors.auth import refusal, signature
from connectors.kinds import KIND_DEFAULTS
from connectors.model import Auth, AuthScheme, Kind

GITHUB = KIND_DEFAULTS[Kind.GITHUB].auth
GITLAB = KIND_DEFAULTS[Kind.GITLAB].auth
JIRA = KIND_DEFAULTS[Kind.JIRA].auth
VECTOR = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
SECRET = "It's a Secret to Everybody"


def test_githubs_published_test_vector() -> None:
    assert signature(SECRET, b"Hello, World!") == VECTOR
    headers = {"X-Hub-Signature-256": f"sha256={VECTOR}"}
    assert refusal(GITHUB, SECRET, headers, b"Hello, World!") is None


def test_a_changed_body_or_wrong_secret_is_refused_without_naming_the_secret() -> None:
    headers = {"x-hub-signature-256": f"sha256={VECTOR}"}
    problem = refusal(GITHUB, SECRET, headers, b"Hello, World?")
    assert problem is not None and SECRET not in problem and VECTOR not in problem
    assert refusal(GITHUB, "another", headers, b"Hello, World!") is not None


def test_a_missing_or_non_ascii_signature_is_refused() -> None:
    assert "missing" in str(refusal(GITHUB, SECRET, {}, b"x"))
    assert refusal(GITHUB, SECRET, {"X-Hub-Signature-256": "sha256=\udcff"}, b"x") is not None


def test_jira_signs_with_x_hub_signature() -> None:
    body = b'{"webhookEvent": "jira:issue_created"}'
    good = {"X-Hub-Signature": "sha256=" + signature("s3", body)}
    assert refusal(JIRA, "s3", good, body) is None
    assert refusal(JIRA, "s3", {"X-Hub-Signature-256": good["X-Hub-Signature"]}, body)


def test_gitlab_sends_the_token_itself() -> None:
    assert refusal(GITLAB, "tok", {"X-Gitlab-Token": "tok"}, b"{}") is None
    assert refusal(GITLAB, "tok", {"X-Gitlab-Token": "tok2"}, b"{}") is not None


def test_bearer_token_of_a_generic_connector() -> None:
    auth = Auth(AuthScheme.BEARER, "Authorization", "LIFECYCLE_CI_TOKEN")
    assert refusal(auth, "t", {"Authorization": "Bearer t"}, b"{}") is None
    assert refusal(auth, "t", {"Authorization": "Basic t"}, b"{}") is not None


def test_an_unset_secret_refuses_everything_and_says_which_variable() -> None:
    problem = refusal(GITHUB, None, {"X-Hub-Signature-256": f"sha256={VECTOR}"}, b"x")
    assert problem is not None and "LIFECYCLE_GITHUB_SECRET" in problem
    assert refusal(GITLAB, "", {"X-Gitlab-Token": ""}, b"{}") is not None
