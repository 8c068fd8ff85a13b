"""The compose rollout, one module per concern; `conductor.roll_out` runs them in order.

- `model`: readers of a service's resolved compose config (pure);
- `planner`: per service what a rolling rollout does, and why (pure);
- `live_record`: the record of the containers meant to serve, per app;
- `context`: one rollout in progress and its result;
- `gate`: the health gate new containers pass;
- `drain`: retiring containers (drain command, wait, stop, remove);
- `outage`: the engine going away mid-rollout;
- `tag_put_back`: image tags back on the live release after a failure;
- `conductor`: build, `pre_deploy`, the strategy's `apply`, `post_deploy`.

The strategies themselves (what `apply` does) are in `workers.strategies`. This package imports
nothing itself, so the pure modules load without the engine's SDK.
"""
