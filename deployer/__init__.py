"""flyte-deploy: deploy Flyte 2 projects from CI."""

__version__ = "0.1.0"
