"""After a failed rollout, each built service's image tag goes back to the image its live containers run.

The build moved the project's image tags to the release that failed: anything that starts
containers from them later (an operator's `up -d`, a reboot, the next deployment's recreate
fallback) must find the live release there instead.
"""

from __future__ import annotations

from workers.rollout.context import Rollout


def put_back_tags(rollout: Rollout) -> None:
    """Point every built service's image tag back at the image its live containers run.

    Best effort: a failure here is logged and never hides the error that ended the rollout.
    A service with no live container (new in this release) has no image to go back to.
    """
    try:
        services = rollout.services or rollout.compose.config(rollout.log)["services"]
        for service, config in sorted(services.items()):
            if "build" not in config:
                continue  # a pulled image: the build did not move its tag
            tag = rollout.compose.image_name(service, config)
            live = {c.image_id for c in rollout.engine.containers(rollout.project, service)}
            if len(live) != 1:
                if live:
                    rollout.log(f"{service}: live containers run {len(live)} images; tag {tag} left as it is")
                continue
            (image,) = live
            if rollout.engine.image_id(tag) == image:
                continue
            rollout.engine.tag(image, tag)
            rollout.log(f"{service}: image tag {tag} put back on the live release's image {image[:19]}")
    except Exception as exc:  # noqa: BLE001 - the rollout's own error is the one to report
        rollout.log(f"could not put the image tags back on the live release: {exc}")
