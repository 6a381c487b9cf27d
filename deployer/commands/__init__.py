"""One module per CLI command; each exposes `command` (or a typer `app` for command groups)."""
