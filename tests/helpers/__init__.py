"""Shared test helpers, one module per concern; fixtures that use them are in tests/fixtures/.

- config: `make_config`, the test Redis URL
- git: real origin repositories and a token-protected git HTTP server
- docker: the local base image, sample apps, load loops, a health-aware proxy, project clean-up
- fake_git_host: a contract-checking stand-in for the git hosts' status APIs
- payloads: signed webhook requests for every host
- redis_server: private redis-server processes (for outages and restarts)
- outbox: reading the outbox and its counters back
"""
