# One image for both halves of hooksvc: `hooksvc serve` (web) and `hooksvc worker`.
# docker-compose.yml shows how they run. The worker drives the host's engine through the
# mounted /var/run/docker.sock: no daemon runs in here.
#
# Debian 13 (trixie), not 12: bookworm packages its docker CLI only inside docker.io, together
# with dockerd, containerd and runc that we would never run, and has only compose v1. Trixie
# ships the client alone (docker-cli, 26.x: an API new enough for current engines, which refuse
# clients older than API 1.44) and compose v2 as a CLI plugin (docker-compose).
ARG PYTHON_IMAGE=python:3.11-slim-trixie
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# git and ssh: the worker fetches releases over HTTPS or with an SSH deploy key.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        git openssh-client ca-certificates docker-cli docker-compose \
    && rm -rf /var/lib/apt/lists/* \
    && docker --version \
    && docker compose version

WORKDIR /src
COPY pyproject.toml README.md ./
COPY hooksvc ./hooksvc
COPY workers ./workers
RUN pip install . && rm -rf /src

# The web server needs no privilege. The worker service runs as root (see docker-compose.yml):
# whoever holds the Docker socket is root on the host anyway.
RUN useradd --system --uid 10001 --home-dir /var/lib/hooksvc --shell /usr/sbin/nologin hooksvc \
    && install -d -o hooksvc -g hooksvc /var/lib/hooksvc /etc/hooksvc
USER hooksvc
WORKDIR /var/lib/hooksvc

EXPOSE 8080
ENTRYPOINT ["hooksvc"]
CMD ["serve", "--bind", "0.0.0.0:8080"]
