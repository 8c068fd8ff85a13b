"""The engine going away mid-rollout (a restart): tell it from a failing container, wait, clean up, report."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from hooksvc.errors import EngineUnavailable, HooksvcError
from workers.docker_engine import DockerEngine, is_connection_failure
from workers.rollout.context import Rollout
from workers.rollout.tag_put_back import put_back_tags

#: How long a rollout whose engine went away waits for it to come back, to remove what it started.
#: A restart takes the engine's start plus its containers' stop grace (10 s unless set).
ENGINE_RETURN_SECONDS = 90.0


def engine_lost(rollout: Rollout, exc: BaseException) -> bool:
    """Whether a failure is (or came with) the engine going away, e.g. a restart.

    While an engine shuts down it stops every container, so to the health gate a restart looks
    like the new container failing; an engine that no longer takes new connections tells them apart.
    """
    rollout.lost = rollout.lost or is_connection_failure(exc) or not rollout.engine.answers()
    return rollout.lost


def recover_from_engine_outage(rollout: Rollout, exc: BaseException,
                               remove_leftovers: Callable[[Rollout], list[str]]) -> NoReturn:
    """Wait (bounded) for the engine, then remove what this rollout started; raise EngineUnavailable.

    Containers the engine stopped come back by themselves when they have a restart policy, the
    new ones too: once the engine answers, the record of live containers says which to remove
    (`remove_leftovers`, the strategy's own: only a rolling rollout starts containers beside the old).
    """
    where = rollout.app.docker_host or "(the local engine)"
    cause = _first_line(exc)
    rollout.log(f"the Docker engine {where} does not answer ({cause}); waiting up to "
                f"{ENGINE_RETURN_SECONDS:.0f}s for it to come back")
    if not rollout.engine.wait_until_answers(ENGINE_RETURN_SECONDS):
        raise EngineUnavailable(
            f"the Docker engine {where} went away during the rollout (the rollout saw: {cause}) and was "
            f"not back within {ENGINE_RETURN_SECONDS:.0f}s: check the engine, then deploy again (the next rollout "
            "removes the containers this one started)") from exc
    rollout.log(f"the Docker engine {where} answers again")
    # The old client's pooled connections died with the engine.
    rollout.engine.close()
    rollout.engine = DockerEngine.connect(rollout.app.docker_host)
    removed, running = [], -1
    try:
        removed = remove_leftovers(rollout)
        rollout.record.save(rollout.project, rollout.live())
        running = sum(1 for c in rollout.engine.containers(rollout.project) if c.running)
    except Exception as cleanup:  # noqa: BLE001 - the outage is the error to report
        rollout.log(f"could not remove the containers of this rollout ({_first_line(cleanup)}); "
                    "the next rollout's left-over check will")
    if rollout.switched:
        outcome = ("the new release had passed its health gate and serves; its old containers were "
                   "retired once the engine was back")
    else:
        put_back_tags(rollout)
        outcome = f"once it was back, {len(removed)} new container(s) were removed"
        if running > 0:
            outcome += f" and the live release runs again ({running} container(s))"
        elif running == 0:
            # The engine starts again only containers with a restart policy; hooksvc does not.
            outcome += ("; no container of the live release runs: its services have no restart policy "
                        "(give them `restart: unless-stopped`), so redeploy the live release now")
    raise EngineUnavailable(f"the Docker engine {where} went away during the rollout (the rollout saw: {cause}); "
                            f"{outcome}; deploy again") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return first if isinstance(exc, HooksvcError) else f"{type(exc).__name__}: {first}"
