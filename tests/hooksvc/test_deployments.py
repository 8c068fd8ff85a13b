"""The deployment record's Redis form: what a submit writes is what a Deployment reads back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hooksvc.deployments import Deployment, NewDeployment, Trigger

SHAS = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)


@given(
    sha=SHAS,
    before=st.one_of(st.just(""), SHAS),
    trigger=st.sampled_from(Trigger),
    delivery=st.text(alphabet="abcdef0123456789-", max_size=36),
    forced=st.booleans(),
    created_at=st.floats(min_value=0, max_value=4e9),
)
def test_record_fields_are_a_queued_deployments_fields(
        sha: str, before: str, trigger: Trigger, delivery: str, forced: bool, created_at: float) -> None:
    """What the submit script writes (`record_fields` plus id, state, created_at) reads back as the deployment."""
    new = NewDeployment("shop", sha, "refs/heads/main", trigger, delivery_id=delivery, forced=forced, before=before)
    pairs = new.record_fields()
    names = pairs[::2]
    assert len(set(names)) == len(names) and "" not in names  # the script ends each record at an empty name
    fields = {"id": "7", "state": "queued", "created_at": repr(created_at),
              **dict(zip(names, pairs[1::2], strict=True))}
    assert Deployment.from_fields(fields) == Deployment.create("7", new, created_at)
