"""The `flyte-deploy` command line. It only parses: each command lives in `deployer/commands/`."""

from __future__ import annotations

import sys

import typer

from deployer.commands import build, bundle, config, deploy, images, plan, preview, run, serve, version
from deployer.errors import DeployError

app = typer.Typer(
    name="flyte-deploy",
    help="Deploy Flyte 2 projects from CI: discover environments, build immutable images or "
    "deterministic code bundles, and register tasks with a Flyte control plane.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command("plan")(plan.command)
app.command("version")(version.command)
app.command("bundle")(bundle.command)
app.command("build")(build.command)
app.command("images")(images.command)
app.command("deploy")(deploy.command)
app.command("run")(run.command)
app.command("serve")(serve.command)
app.add_typer(preview.app, name="preview")
app.command("config")(config.command)


def main() -> None:
    """The command, in a supervised child process: user code imported during discovery cannot end the
    run silently or hang it (see `deployer.supervise`)."""
    from deployer.settings import load_settings, option_info
    from deployer.supervise import supervised

    try:
        timeout = load_settings().import_timeout
    except DeployError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    finished = supervised(
        run_here, import_timeout_s=timeout, timeout_setting=option_info("import_timeout").env[0]
    )
    if finished.problem:
        typer.echo(f"error: {finished.problem}", err=True)
    sys.exit(finished.code)


def run_here() -> int:
    """The command in this process; its exit code."""
    try:
        app(standalone_mode=False)
    except DeployError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # the parser's own errors: unknown option, bad choice, ...
        message = _usage_message(exc)
        if message:  # empty when the usage was printed instead (no arguments at all)
            typer.echo(f"error: {message}", err=True)
        return int(getattr(exc, "exit_code", 2))
    return 0


def _usage_message(exc: typer.TyperException) -> str:
    """The parser's message on one line, naming the flag, plus where to read the usage."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    # pydantic's prefix on choice errors says nothing to a user.
    message = " ".join(message.replace("Value error, ", "").split())
    if not message:
        return ""
    context = getattr(exc, "ctx", None)
    command = getattr(context, "command_path", None)
    return f"{message} (see `{command} --help`)" if command else message


if __name__ == "__main__":
    main()
