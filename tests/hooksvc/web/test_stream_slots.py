"""Stream slots: long requests one web process serves at once, in total and per client address."""

from __future__ import annotations

import pytest

from hooksvc import defaults
from hooksvc.errors import ServerBusy, TooManyRequests
from hooksvc.web.stream_slots import StreamSlots, slots_for


class TestStreamSlots:
    def test_half_the_threads_and_never_none(self) -> None:
        """Long requests get half of a process's threads, and at least one."""
        assert slots_for(8) == 4 and slots_for(3) == 1 and slots_for(1) == 1

    def test_total_is_a_503_with_retry_after(self) -> None:
        """Once every slot is taken the next long request is ServerBusy, with Retry-After."""
        slots = StreamSlots(total=2, per_client=5)
        slots.acquire("a", limit_client=True)
        slots.acquire("b", limit_client=False)
        with pytest.raises(ServerBusy) as exc:
            slots.acquire("c", limit_client=True)
        assert exc.value.status_code == 503 and exc.value.retry_after == defaults.STREAM_RETRY_AFTER_SECONDS

    def test_one_client_gets_its_share_then_429(self) -> None:
        """An anonymous client holds at most `per_client` slots; others still get theirs."""
        slots = StreamSlots(total=10, per_client=2)
        slots.acquire("a", limit_client=True)
        slots.acquire("a", limit_client=True)
        with pytest.raises(TooManyRequests) as exc:
            slots.acquire("a", limit_client=True)
        assert exc.value.status_code == 429
        slots.acquire("b", limit_client=True)
        assert slots.in_use == 3

    def test_operators_count_only_against_the_total(self) -> None:
        """A request with an operator's credentials is not held to its address's share."""
        slots = StreamSlots(total=4, per_client=1)
        slots.acquire("a", limit_client=True)
        for _ in range(3):
            slots.acquire("a", limit_client=False)
        assert slots.in_use == 4

    def test_release_gives_the_slot_back_once(self) -> None:
        """Releasing frees the slot and the client's share; a second release changes nothing."""
        slots = StreamSlots(total=1, per_client=1)
        release = slots.acquire("a", limit_client=True)
        release()
        release()
        assert slots.in_use == 0
        slots.acquire("a", limit_client=True)
        with pytest.raises(ServerBusy):
            slots.acquire("b", limit_client=False)
