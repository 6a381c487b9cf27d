"""The step summary and the sticky PR comment, rendered from `templates/report/`.

This module only shapes values (table cells, labels); all Markdown lives in the templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from deployer.models import BuiltImage, Report
from deployer.report.models import CleanupResult, RunInfo, RunKind
from deployer.templating import render

# GitHub rejects step summaries above 1 MiB and comments above 65536 characters.
SUMMARY_LIMIT_BYTES = 1024 * 1024
COMMENT_LIMIT_CHARS = 65_536
MARKER_PREFIX = "<!-- flyte-deploy:preview"
_BACKTICKS = re.compile(r"`+")
_CODE_SPAN = re.compile(r"(`[^`]+`)")
_MENTION = re.compile(r"(?<![\w.])@(?=\w)")


def comment_marker(project: str) -> str:
    """The hidden first line that identifies our sticky comment (one per PR and Flyte project)."""
    return f"{MARKER_PREFIX} project={cell(project)} -->"


def summary_markdown(
    run: RunInfo,
    report: Report | None = None,
    *,
    cleanup: CleanupResult | None = None,
    warnings: tuple[str, ...] = (),
) -> str:
    context = _context(run, report, cleanup, warnings)
    text = render("report/summary.md.j2", **context)
    if len(text.encode()) > SUMMARY_LIMIT_BYTES:
        # Huge projects: keep the headline, facts and status; drop the per-environment tables.
        dropped: dict[str, list[Any]] = {"environments": [], "images": [], "timings": [], "triggers": []}
        text = render("report/summary.md.j2", **(context | dropped))
    return _clip(text, SUMMARY_LIMIT_BYTES)


def pr_comment_markdown(
    run: RunInfo, report: Report | None = None, *, project: str, cleanup: CleanupResult | None = None
) -> str:
    context = _context(run, report, cleanup, ())
    marker = comment_marker(project)
    text = render("report/pr_comment.md.j2", marker=marker, updated_for=_updated_for(run), **context)
    if len(text) > COMMENT_LIMIT_CHARS:
        text = render(
            "report/pr_comment.md.j2",
            marker=marker,
            updated_for=_updated_for(run),
            **(context | {"images": [], "triggers": []}),
        )
    return _clip(text, COMMENT_LIMIT_CHARS)


# ---------------------------------------------------------------------- shaping


@dataclass(frozen=True)
class _Headline:
    icon: str
    headline: str
    note: str | None
    note_kind: str
    error: str | None
    run_url: str | None


def _context(
    run: RunInfo, report: Report | None, cleanup: CleanupResult | None, warnings: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "run": _headline(run, report),
        "facts": _facts(run, report, cleanup),
        "environments": _environment_rows(report),
        "triggers": _trigger_rows(report),
        "apps": _app_rows(report),
        "images": _image_rows(report),
        "bundle": _bundle(report),
        "cleanup": _cleanup_lines(cleanup),
        "warnings": [prose(w) for w in (*warnings, *(cleanup.warnings if cleanup else ()))],
        "timings": [(cell(t.stage), f"{t.seconds:.1f}") for t in (report.timings if report else ())],
        "total_seconds": f"{sum(t.seconds for t in report.timings):.1f}" if report else "0.0",
    }


def _headline(run: RunInfo, report: Report | None) -> _Headline:
    dry = report is not None and report.deployment is not None and report.deployment.dry_run
    # A dry run's environments are all "skipped": that is not a failure.
    failed = run.error is not None or (
        report is not None and report.deployment is not None and not dry and not report.deployment.ok
    )
    target = code(f"{report.plan.project}/{report.plan.domain}") if report else ""
    version = code(report.plan.version) if report else ""
    pr = f"#{run.pr}" if run.pr else "the pull request"
    headlines = {
        RunKind.preview: f"preview of {pr} {'failed' if failed else 'deployed'}",
        RunKind.release: f"release {version} {'failed' if failed else 'deployed to ' + target}",
        RunKind.branch: f"{code(_branch(run.ref))} {'failed' if failed else 'deployed to ' + target}",
        RunKind.build_only: "built only: nothing pushed or deployed" if not failed else "build failed",
        RunKind.cleanup: f"preview of {pr} removed" if not failed else f"cleanup of {pr} failed",
        RunKind.skipped: "stopped before deploying anything" if failed else "nothing to deploy",
    }
    headline = headlines[run.kind]
    if dry and not failed:
        headline += " (dry run: nothing built, pushed or registered)"
    if failed:
        icon = "❌"
    else:
        icon = {RunKind.cleanup: "🧹", RunKind.skipped: "⏭️", RunKind.build_only: "🏗️"}.get(run.kind, "✅")
    return _Headline(
        icon=icon,
        headline=headline,
        note=prose(run.note) if run.note else None,
        note_kind="WARNING" if run.kind is RunKind.build_only else "NOTE",
        error=prose(run.error) if run.error else None,
        run_url=run.run_url,
    )


def _facts(run: RunInfo, report: Report | None, cleanup: CleanupResult | None) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = []
    if report is not None:
        facts.append(("Version", code(report.plan.version)))
        target = code(f"{report.plan.project}/{report.plan.domain}")
        if report.deployment is not None:
            target += f" on {prose(report.deployment.endpoint)}"
        facts.append(("Target", target))
    elif cleanup is not None:
        facts.append(("Target", code(f"{cleanup.project}/{cleanup.domain}")))
    if run.sha:
        short = f"`{run.sha[:7]}`"
        facts.append(("Commit", f"[{short}]({run.commit_url})" if run.commit_url else short))
    if run.preview_url:
        facts.append(("Preview", f"[{cell(run.preview_url)}]({run.preview_url})"))
    return facts


def _environment_rows(report: Report | None) -> list[dict[str, str]]:
    if report is None:
        return []
    modes = {env.name: env.mode for env in report.plan.environments}
    if report.deployment is not None:
        return [
            {
                "name": prose(env.name),
                "tasks": _code_list(env.tasks) if env.app is None else f"app {code(env.app.name)}",
                "mode": prose(modes.get(env.name, "")),
                "where": _where(env.image, env.bundle_uri),
                "status": prose(f"{env.status}: {env.error}" if env.error else env.status),
            }
            for env in report.deployment.environments
        ]
    built = {image.env_name: image for image in report.artifacts.images}
    return [
        {
            "name": prose(env.name),
            "tasks": _code_list(env.tasks) if env.app is None else f"app {code(env.app.name)}",
            "mode": prose(env.mode),
            "where": _where(built[env.name].uri if env.name in built else env.image.uri, None),
            "status": "not deployed",
        }
        for env in report.plan.environments
    ]


def _trigger_rows(report: Report | None) -> list[dict[str, str]]:
    """Every trigger: as the control plane holds it after a deploy, else as planned."""
    if report is None:
        return []
    if report.deployment is not None:
        rows = [
            {
                "task": code(t.task),
                "name": code(t.name),
                "schedule": code(t.schedule),
                "active": _active(t.active),
                "removed": "",
            }
            for env in report.deployment.environments
            for t in env.triggers
        ]
        rows += [
            {
                "task": code(r.split("/", 1)[0]),
                "name": code(r.split("/", 1)[-1]),
                "schedule": "—",
                "active": "removed: no longer in the code",
                "removed": "yes",
            }
            for env in report.deployment.environments
            for r in env.removed_triggers
        ]
        return rows
    return [
        {
            "task": code(t.task),
            "name": code(t.name),
            "schedule": code(t.schedule),
            "active": _active(t.active) + " (planned)",
            "removed": "",
        }
        for env in report.plan.environments
        for t in env.triggers
    ]


def _active(active: bool) -> str:
    return "✅ active" if active else "⏸️ inactive"


def _app_rows(report: Report | None) -> list[dict[str, str]]:
    """Every app, with its URL when the control plane reports one."""
    if report is None:
        return []
    if report.deployment is not None:
        rows = []
        for env in report.deployment.environments:
            if env.app is None:
                continue
            app = env.app
            rows.append(
                {
                    "env": prose(env.name),
                    "name": code(app.name),
                    "url": f"[{cell(app.url)}]({app.url})" if app.url and _linkable(app.url) else "—",
                    "revision": str(app.revision) if app.revision else "—",
                    "status": prose(f"{env.status}: {app.reason}" if app.reason else env.status),
                }
            )
        return rows
    return [
        {
            "env": prose(env.name),
            "name": code(env.app.name),
            "url": "—",
            "revision": "—",
            "status": "not deployed",
        }
        for env in report.plan.environments
        if env.app is not None
    ]


def _linkable(url: str) -> bool:
    # Only web links: a control plane's answer must not smuggle `javascript:` or Markdown into the page.
    return url.startswith(("https://", "http://")) and not any(c in url for c in " <>()[]`\n")


def _image_rows(report: Report | None) -> list[dict[str, str]]:
    if report is None:
        return []
    return [
        {
            "name": prose(image.env_name),
            "uri": cell(image.uri),
            "tags": _code_list(image.tags),
            "build": _build_note(image),
        }
        for image in report.artifacts.images
    ]


def _build_note(image: BuiltImage) -> str:
    if not image.built:
        return "reused: retagged, no rebuild" if image.pushed else "already built here, not pushed"
    return "built and pushed" if image.pushed else "built, not pushed"


def _bundle(report: Report | None) -> dict[str, Any] | None:
    if report is None or report.artifacts.bundle is None:
        return None
    bundle = report.artifacts.bundle
    return {
        "uri": cell(bundle.uri or str(bundle.path)),
        "digest": bundle.digest,
        "files": len(bundle.files),
        "size": _size(bundle.size),
        "reused": bundle.reused,
    }


def _cleanup_lines(cleanup: CleanupResult | None) -> list[str]:
    if cleanup is None:
        return []
    lines = []
    if cleanup.removed_tags:
        lines.append("Registry tags removed: " + _code_list(cleanup.removed_tags))
    if cleanup.missing_tags:
        lines.append("Registry tags already gone: " + _code_list(cleanup.missing_tags))
    if cleanup.removed_images:
        lines.append("Images of superseded pushes removed: " + _code_list(cleanup.removed_images))
    if not cleanup.removed_tags and not cleanup.missing_tags:
        lines.append(f"No registry tags `pr-{cleanup.pr}` were found.")
    where = (
        "the embedded control plane"
        if cleanup.control_plane == "embedded"
        else f"control plane {prose(cleanup.control_plane)}"
    )
    if cleanup.versions_kept:
        kept_on = (
            "the embedded control plane"
            if cleanup.control_plane == "embedded"
            else prose(cleanup.control_plane)
        )
        lines.append(f"Versions on {kept_on} are kept: Flyte's task service has no delete.")
    elif cleanup.removed_versions:
        lines.append(
            f"Removed from {where}: {cleanup.removed_tasks} task(s) in "
            f"{len(cleanup.removed_versions)} version(s): " + _code_list(cleanup.removed_versions)
        )
    else:
        lines.append(f"No preview versions were registered in {where}.")
    if cleanup.removed_triggers:
        lines.append("Triggers removed: " + _code_list(cleanup.removed_triggers))
    if cleanup.removed_apps:
        lines.append("Apps removed: " + _code_list(cleanup.removed_apps))
    if cleanup.deactivated_deployments:
        lines.append(f"{len(cleanup.deactivated_deployments)} GitHub deployment(s) marked inactive.")
    return lines


def _updated_for(run: RunInfo) -> str:
    return f"`{run.sha[:7]}`" if run.sha else "this run"


def _where(image: str | None, bundle_uri: str | None) -> str:
    parts = [code(p) for p in (bundle_uri, image) if p]
    return " in ".join(parts) if parts else "—"


def _code_list(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(code(v) for v in values) if values else "—"


def _branch(ref: str | None) -> str:
    return (ref or "branch").removeprefix("refs/heads/")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def cell(value: object) -> str:
    """A value made safe inside a Markdown table cell (and on one line)."""
    # GitHub applies `\|` even inside code spans in tables, so this is the only escape needed.
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def code(value: object) -> str:
    """`value` as one Markdown code span, whatever backticks it holds (HTML and Markdown are inert
    inside a code span: only a backtick could end it early)."""
    text = cell(value)
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def prose(value: object) -> str:
    """Text that may come from users (branch names, error messages, file paths) made inert in
    Markdown: outside its code spans, no HTML (a stray `<!--` would hide the rest of the page), no
    links or images, no @-mentions; on one line."""
    parts = _CODE_SPAN.split(cell(value))
    return "".join(part if index % 2 else _escape(part) for index, part in enumerate(parts))


def _escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("[", "\\[").replace("]", "\\]")
    return _MENTION.sub("&#64;", text)


def _clip(text: str, limit_bytes: int) -> str:
    data = text.encode()
    if len(data) <= limit_bytes:
        return text
    return data[: limit_bytes - 64].decode(errors="ignore") + "\n\n… (truncated)\n"
