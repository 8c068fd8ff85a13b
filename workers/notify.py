"""Notifications of finished deployments: a signed generic JSON webhook and a Slack incoming webhook.

The builders are pure; `workers.outbox_sender` delivers them (retried, in its own thread).
"""

from __future__ import annotations

import hashlib
import hmac

from hooksvc.config import NotifyConfig
from hooksvc.deployments import DeploymentState
from hooksvc.outbox import OutboxEvent
from workers.http import HttpRequest, encode_json
from workers.statuses import USER_AGENT, one_line

SIGNATURE_HEADER = "X-Hooksvc-Signature-256"
EVENT_HEADER = "X-Hooksvc-Event"
#: The outbox event id: delivery is at-least-once, so a receiver can drop a repeat by this id.
DELIVERY_HEADER = "X-Hooksvc-Delivery"
EVENT_NAME = "deployment"

_SLACK_ICONS = {
    DeploymentState.SUCCEEDED: ":white_check_mark:",
    DeploymentState.FAILED: ":x:",
    DeploymentState.ERROR: ":boom:",
    DeploymentState.SKIPPED: ":fast_forward:",
    DeploymentState.SUPERSEDED: ":leftwards_arrow_with_hook:",
    DeploymentState.CANCELLED: ":no_entry_sign:",
}


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the raw body, the scheme GitHub uses for its own webhooks."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str) -> bool:
    """True when `header` is `sign(body, secret)`, compared in constant time (for receivers and tests)."""
    return hmac.compare_digest(sign(body, secret), header)


def webhook_payload(event: OutboxEvent, url: str) -> dict[str, object]:
    return {
        "app": event.app,
        "deployment_id": event.deployment_id,
        "sha": event.sha,
        "ref": event.ref,
        "state": str(event.state),
        "error": event.error or None,
        "url": url or None,
    }


def build_webhook_request(notify: NotifyConfig, event: OutboxEvent, url: str) -> HttpRequest:
    """The signed JSON POST to `notify.webhook_url`; `url` is the deployment page."""
    if notify.webhook_url is None:
        raise ValueError("this app has no notify_url")
    payload = webhook_payload(event, url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: EVENT_NAME,
        DELIVERY_HEADER: event.id,
    }
    if notify.webhook_secret is not None:
        headers[SIGNATURE_HEADER] = sign(encode_json(payload), notify.webhook_secret.reveal())
    # The signature covers `HttpRequest.body()`, which is `encode_json(payload)`: the bytes sent.
    return HttpRequest(method="POST", url=notify.webhook_url, headers=headers, json=payload)


def slack_escape(text: str) -> str:
    """Slack's three control characters, escaped as its message format requires."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(event: OutboxEvent, url: str) -> str:
    """One line for a channel: icon, app, deployment, short sha, state, reason, link."""
    icon = _SLACK_ICONS.get(event.state, ":information_source:")
    commit = slack_escape(event.sha[:12] or event.ref)
    text = f"{icon} {slack_escape(event.app)}: deployment {event.deployment_id} of `{commit}` {event.state}"
    reason = one_line(event.error)
    if reason and event.state is not DeploymentState.CANCELLED:
        text += f": {slack_escape(reason)}"
    if url:
        text += f" (<{url}|details>)"
    return text


def build_slack_request(notify: NotifyConfig, event: OutboxEvent, url: str) -> HttpRequest:
    """The POST of `{"text": ...}` to the Slack-compatible incoming-webhook URL (itself a secret)."""
    if notify.slack_url is None:
        raise ValueError("this app has no slack_url")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    body = {"text": slack_text(event, url)}
    return HttpRequest(method="POST", url=notify.slack_url.reveal(), headers=headers, json=body)
