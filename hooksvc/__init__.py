"""hooksvc: signed git webhooks in, zero-downtime docker compose rollouts out.

This package is the core (config, the deployment model and its store, Redis keys, the outbox):
it imports neither Flask nor the deploy side. `hooksvc.web` is the HTTP side, `workers` the
deploy side, `hooksvc.runtime` the one place that starts processes and threads, `hooksvc.cli`
the command line. docs/architecture.md draws the layers.
"""
