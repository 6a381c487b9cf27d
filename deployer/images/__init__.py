"""Images: spec resolution (spec.py), Dockerfile rendering, builds, registry, tags, push."""
