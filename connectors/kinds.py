"""What each kind of connector fixes: the authentication, and where event, id and action are.

A connector file of kind ``github``, ``gitlab`` or ``jira`` inherits these (DESIGN.md 6b);
a ``generic`` connector states them in its file.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.model import Auth, AuthScheme, Kind


@dataclass(frozen=True, slots=True)
class KindDefaults:
    auth: Auth
    event_header: str | None
    event_path: str | None
    delivery_header: str
    action_path: str


KIND_DEFAULTS: dict[Kind, KindDefaults] = {
    Kind.GITHUB: KindDefaults(
        Auth(AuthScheme.HMAC, "X-Hub-Signature-256", "LIFECYCLE_GITHUB_SECRET", "sha256="),
        event_header="X-GitHub-Event",
        event_path=None,
        delivery_header="X-GitHub-Delivery",
        action_path="action",
    ),
    Kind.GITLAB: KindDefaults(
        Auth(AuthScheme.TOKEN, "X-Gitlab-Token", "LIFECYCLE_GITLAB_TOKEN"),
        event_header="X-Gitlab-Event",
        event_path=None,
        delivery_header="X-Gitlab-Event-UUID",
        action_path="object_attributes.action",
    ),
    Kind.JIRA: KindDefaults(
        Auth(AuthScheme.HMAC, "X-Hub-Signature", "LIFECYCLE_JIRA_SECRET", "sha256="),
        event_header=None,
        event_path="webhookEvent",
        delivery_header="X-Atlassian-Webhook-Identifier",
        action_path="issue_event_type_name",
    ),
}
"""The fixed parts of the three tools' connectors (their secrets are settings of the engine)."""
