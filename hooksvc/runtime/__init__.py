"""The composition root: the one place that starts processes and threads, and the only one that
may import both the web side (`hooksvc.web`) and the deploy side (`workers`).

- `base.Runtime`: the background work of one process, all of it under the config the process
  started with (one config lifetime per process: a worker's jobs, its outbox sender and its poller
  never disagree on which apps exist). Every process runs the reaper, which ends deployments
  whose worker died.
- `web.serve`: `hooksvc serve`, gunicorn's threaded workers, each with a `Runtime`.
- `worker.work`: `hooksvc worker`, an RQ worker with a `WorkerRuntime`: the reaper, the intake
  dispatcher (webhooks → RQ jobs and outbox events), the outbox sender (commit statuses,
  notifications) and the branch poller (apps with `poll_interval`).
- `supervise.Supervisor`: `hooksvc run`, web and workers as child processes on one machine, with
  a private redis-server when the config names none.

The modules are imported one at a time, by the command that needs them: a web process never
loads Docker's SDK or GitPython.
"""
