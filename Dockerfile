# The flyte-deploy GitHub Action image (`runs.using: docker` in action.yml).
#
#   docker build -t flyte-deploy-action .                                  # python:3.11-slim-bookworm
#   docker build --build-arg BASE_IMAGE=mirror.local/python:3.11 -t ... .  # any Debian-based Python 3.11+
#
# Prebuilt variant: push the result (e.g. ghcr.io/<org>/flyte-deploy-action:v1) and set
# `runs.image: docker://ghcr.io/<org>/flyte-deploy-action:v1` in action.yml, so workflow runs pull it
# instead of building it.
#
# Runtime needs only Python, git (for the repository's history) and the Docker engine's socket, which
# the runner mounts: no Docker CLI, compilers or build tools are installed.
ARG BASE_IMAGE=python:3.11-slim-bookworm
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

# Dependencies first, from pyproject.toml alone (an empty package stands in for the sources), so
# this layer is reused until the dependency list changes.
COPY pyproject.toml README.md /src/
RUN mkdir -p /src/deployer /src/entrypoint /src/templates \
 && touch /src/deployer/__init__.py /src/entrypoint/__init__.py \
 && python -m pip install /src \
 && python -m pip uninstall -y flyte-deploy \
 && rm -rf /src

COPY pyproject.toml README.md /src/
COPY deployer /src/deployer
COPY entrypoint /src/entrypoint
COPY templates /src/templates
RUN python -m pip install --no-deps /src \
 && rm -rf /src \
 && python -c "import entrypoint, deployer.templating as t; assert (t.templates_dir() / 'report').is_dir()"

ENTRYPOINT ["python", "-m", "entrypoint"]
