"""The exceptions of hooksvc. Each message tells the user what to do and never contains a secret."""

from __future__ import annotations


class HooksvcError(Exception):
    """Base class: every error hooksvc raises on purpose."""

    #: HTTP status the web layer answers with.
    status_code = 500


class ConfigError(HooksvcError):
    """The configuration is invalid; `problems` lists every problem found, each naming file and key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class BadRequest(HooksvcError):
    """The request cannot be understood: malformed body, missing field, wrong content type."""

    status_code = 400


class Unauthorized(HooksvcError):
    """Missing or bad credentials. The public message is generic; `reason` goes to the server log only."""

    status_code = 401
    public_message = "signature or token rejected"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(self.public_message)


class Forbidden(HooksvcError):
    """The operator is known but their role does not allow this; nothing was changed."""

    status_code = 403


class NotFound(HooksvcError):
    """No such app or deployment."""

    status_code = 404


class Conflict(HooksvcError):
    """The request conflicts with the current state (e.g. cancelling a deployment that already runs)."""

    status_code = 409


class BodyTooLarge(HooksvcError):
    """The request body is over `max_body_bytes`."""

    status_code = 413


class RetryLater(HooksvcError):
    """The request is refused for now; `retry_after` (whole seconds) goes out as `Retry-After`."""

    def __init__(self, message: str, retry_after: int) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(message)


class TooManyRequests(RetryLater):
    """This client (an address, a token) has had its share: too many failed logins or open streams."""

    status_code = 429


class ServerBusy(RetryLater):
    """Every slot this web process keeps for long requests (followed logs, long-polls) is taken."""

    status_code = 503


class RedisUnavailable(HooksvcError):
    """Redis cannot be reached; nothing was written and the sender may retry."""

    status_code = 503


class DeployError(HooksvcError):
    """A deployment step failed in a way the user's release caused (build, health check, ref checks)."""


class GitError(DeployError):
    """A git operation failed or a sha is not allowed (not on the branch, unknown)."""


class ComposeError(DeployError):
    """A compose command failed."""


class HealthCheckFailed(DeployError):
    """A new container became unhealthy, exited, or was not healthy in time."""


class EngineUnavailable(HooksvcError):
    """The Docker engine went away during a deployment (restarted, stopped, unreachable): not the release's fault."""


class ReleaseStepFailed(DeployError):
    """A `pre_deploy` step exited non-zero, timed out or could not run; nothing was rolled out."""


class PostDeployFailed(ReleaseStepFailed):
    """A `post_deploy` step failed after the rollout: the new release is live all the same."""


class DeploymentCancelled(DeployError):
    """An operator cancelled the running deployment before its rollout replaced the live release."""


class GatewayTimeout(HooksvcError):
    """A worker was asked and did not answer in time (no worker running, or all of them busy)."""

    status_code = 504
