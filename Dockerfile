# The flyte-deploy GitHub Action image (`runs.using: docker` in action.yml).
#
#   docker build -t flyte-deploy-action .                                  # the pinned base below
#   docker build --build-arg BASE_IMAGE=mirror.local/python:3.11 -t ... .  # any Debian-based Python 3.11+
#
# Released versions do not build it: .github/workflows/action-image.yml publishes it (linux/amd64 and
# linux/arm64) to ghcr.io and the release's action.yml names it by digest (`image: docker://...`).
#
# Reproducible: the base is pinned by digest (an OCI index: the same pin serves amd64 and arm64) and
# every Python package, the build backend included, installs from requirements.lock with
# --require-hashes (regenerate it with scripts/lock). Runtime needs only Python, git (for the
# repository's history) and the Docker engine's socket, which the runner mounts: no Docker CLI,
# compilers or build tools are installed.
# python:3.11-slim-bookworm (Python 3.11.16), Docker Hub, 2026-09.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# git: the deployer reads the repository's commits, tags and dirty state with it. Docs and man pages
# are not installed, and apt's package lists and caches are dropped in the same layer.
RUN printf 'path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\npath-exclude=/usr/share/locale/*\n' \
      > /etc/dpkg/dpkg.cfg.d/01-flyte-deploy-nodoc \
 && apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log

# Dependencies first, from the lock alone, so this layer is reused until the lock changes. No
# resolver runs: every file is named with its hash, and anything unpinned fails the build.
COPY requirements.lock /src/requirements.lock
RUN python -m pip install --no-deps --require-hashes -r /src/requirements.lock \
 && rm -rf /src

# The project itself, built with the locked backend (no isolated build env fetching its own).
COPY pyproject.toml README.md /src/
COPY deployer /src/deployer
COPY entrypoint /src/entrypoint
COPY templates /src/templates
RUN python -m pip install --no-deps --no-build-isolation /src \
 && rm -rf /src \
 && python -m pip check \
 && python -c "import entrypoint, deployer.templating as t; assert (t.templates_dir() / 'report').is_dir()"

ENTRYPOINT ["python", "-m", "entrypoint"]
