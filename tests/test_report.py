"""The step summary and the PR comment, rendered from templates/report/ for the runs users see."""

from __future__ import annotations

from pathlib import Path

from deployer.models import (
    Artifacts,
    BuiltImage,
    BundleArtifact,
    Deployment,
    EnvDeployment,
    GitInfo,
    ImageSpec,
    Plan,
    PlannedEnv,
    Report,
    Timing,
)
from deployer.report.models import CleanupResult, RunInfo, RunKind
from deployer.report.render import (
    COMMENT_LIMIT_CHARS,
    SUMMARY_LIMIT_BYTES,
    comment_marker,
    pr_comment_markdown,
    summary_markdown,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "d" * 64


def make_report(
    *, envs: int = 2, built: bool = True, failed: str | None = None, dry_run: bool = False
) -> Report:
    names = ["prep", "analysis", *(f"env{i}" for i in range(envs - 2))][:envs]
    planned = tuple(
        PlannedEnv(
            name=name,
            depends_on=(),
            tasks=(f"{name}.run", f"{name}.check|pipe"),
            image=ImageSpec(spec_id="s" * 12),
            mode="container",
            mode_reason="a Docker engine answered",
        )
        for name in names
    )
    plan = Plan(
        version="v1.2.0",
        git=GitInfo(sha=SHA, ref="refs/tags/v1.2.0", pr=None, dirty=False),
        image_tags=("1.2.0", "1.2", "1", "latest", "sha-0123456"),
        project="flytesnacks",
        domain="production",
        root_dir=Path("."),
        environments=planned,
        bundle=None,
        image_args=(),
    )
    images = tuple(
        BuiltImage(
            env_name=name,
            repository=f"127.0.0.1:5000/acme/{name}",
            identity="build-" + "e" * 32,
            digest=DIGEST,
            tags=("build-" + "e" * 32, "1.2.0", "sha-0123456"),
            built=built,
            pushed=True,
        )
        for name in names
    )
    statuses = tuple(
        EnvDeployment(
            name=name,
            tasks=(f"{name}.run", f"{name}.check|pipe"),
            status="failed" if name == failed else ("skipped" if dry_run else "registered"),
            image=f"127.0.0.1:5000/acme/{name}@{DIGEST}",
            error="UNAVAILABLE: control plane went away" if name == failed else None,
        )
        for name in names
    )
    return Report(
        plan=plan,
        artifacts=Artifacts(images=images),
        deployment=Deployment(
            version="v1.2.0",
            project="flytesnacks",
            domain="production",
            endpoint="dns:///flyte.example.com",
            environments=statuses,
            dry_run=dry_run,
        ),
        timings=(Timing(stage="plan", seconds=0.42), Timing(stage="images", seconds=3.5)),
    )


RELEASE = RunInfo(
    kind=RunKind.release,
    event="push",
    sha=SHA,
    ref="refs/tags/v1.2.0",
    commit_url=f"https://github.com/acme/app/commit/{SHA}",
    run_url="https://github.com/acme/app/actions/runs/1",
)


def test_release_summary_shows_version_target_images_by_digest_and_timings() -> None:
    text = summary_markdown(RELEASE, make_report(built=False))
    assert text.startswith("## ✅ Flyte deploy · release `v1.2.0` deployed to `flytesnacks/production`")
    assert "| Version | `v1.2.0` |" in text
    assert "| Target | `flytesnacks/production` on dns:///flyte.example.com |" in text
    assert f"| Commit | [`0123456`](https://github.com/acme/app/commit/{SHA}) |" in text
    # Images are shown by digest, with their tags, and a release says it promoted rather than rebuilt.
    assert (
        f"| prep | `127.0.0.1:5000/acme/prep@{DIGEST}` | `build-{'e' * 32}`, `1.2.0`, `sha-0123456` "
        "| reused: retagged, no rebuild |"
    ) in text
    # A `|` inside a value cannot break the table.
    assert "| **prep** | `prep.run`, `prep.check\\|pipe` | container |" in text
    assert "| plan | 0.4 |" in text and "| images | 3.5 |" in text and "Timings (3.9 s)" in text


def test_failed_registration_is_the_headline() -> None:
    text = summary_markdown(RELEASE, make_report(failed="analysis"))
    assert text.startswith("## ❌ Flyte deploy · release `v1.2.0` failed")
    assert "| failed: UNAVAILABLE: control plane went away |" in text


def test_build_only_summary_says_why_nothing_was_pushed() -> None:
    run = RunInfo(
        kind=RunKind.build_only,
        event="pull_request",
        pr=9,
        sha=SHA,
        note="Pull request #9 comes from the fork `evil/app`: nothing is pushed or deployed.",
    )
    report = make_report().model_copy(update={"deployment": None})
    text = summary_markdown(run, report)
    assert text.startswith("## 🏗️ Flyte deploy · built only: nothing pushed or deployed")
    assert "> [!WARNING]\n> Pull request #9 comes from the fork `evil/app`" in text
    assert "| **prep** | `prep.run`, `prep.check\\|pipe` | container |" in text
    assert "| not deployed |" in text


def test_dry_run_is_labelled() -> None:
    text = summary_markdown(RELEASE, make_report(dry_run=True))
    assert "(dry run: nothing built, pushed or registered)" in text


def test_pr_comment_starts_with_its_marker_and_lists_environments_and_images() -> None:
    run = RunInfo(
        kind=RunKind.preview,
        pr=12,
        sha=SHA,
        preview_url="https://flyte.example.com/v/pr-12",
        run_url="https://github.com/acme/app/actions/runs/5",
    )
    text = pr_comment_markdown(run, make_report(), project="flytesnacks")
    assert text.startswith(comment_marker("flytesnacks") + "\n")
    assert comment_marker("flytesnacks") != comment_marker("other")
    assert "### ✅ Flyte preview · preview of #12 deployed" in text
    assert "**Version** `v1.2.0`" in text
    assert "**Preview** [https://flyte.example.com/v/pr-12](https://flyte.example.com/v/pr-12)" in text
    image = f"`127.0.0.1:5000/acme/analysis@{DIGEST}`"
    assert (
        f"| **analysis** | `analysis.run`, `analysis.check\\|pipe` | container | {image} | registered |"
        in text
    )
    assert "[workflow run](https://github.com/acme/app/actions/runs/5)" in text
    assert "Updated for `0123456`" in text


def test_pr_comment_after_a_failed_deploy_shows_the_error() -> None:
    run = RunInfo(kind=RunKind.preview, pr=12, sha=SHA, error="discovery: workflows.py line 3: boom")
    text = pr_comment_markdown(run, None, project="flytesnacks")
    assert "### ❌ Flyte preview · preview of #12 failed" in text
    assert "> [!CAUTION]\n> discovery: workflows.py line 3: boom" in text


def test_cleanup_says_what_was_removed_and_what_was_kept() -> None:
    result = CleanupResult(
        pr=12,
        project="flytesnacks",
        domain="development",
        removed_tags=("127.0.0.1:5000/acme/prep:pr-12",),
        removed_versions=("pr-12-" + SHA,),
        removed_tasks=3,
        deactivated_deployments=(5, 6),
        warnings=("kept 127.0.0.1:5000/acme/base:pr-12: the registry can only delete the whole image",),
    )
    run = RunInfo(kind=RunKind.cleanup, pr=12)
    text = summary_markdown(run, cleanup=result)
    assert text.startswith("## 🧹 Flyte deploy · preview of #12 removed")
    assert "- Registry tags removed: `127.0.0.1:5000/acme/prep:pr-12`" in text
    assert f"- Removed from the embedded control plane: 3 task(s) in 1 version(s): `pr-12-{SHA}`" in text
    assert "- 2 GitHub deployment(s) marked inactive." in text
    assert "### Warnings\n\n- kept 127.0.0.1:5000/acme/base:pr-12" in text
    remote = result.model_copy(
        update={"control_plane": "dns:///flyte.example.com", "removed_versions": (), "versions_kept": True}
    )
    assert "Versions on dns:///flyte.example.com are kept" in summary_markdown(run, cleanup=remote)
    comment = pr_comment_markdown(run, None, project="flytesnacks", cleanup=result)
    assert comment.startswith(comment_marker("flytesnacks"))
    assert "preview of #12 removed" in comment


def test_huge_reports_stay_under_githubs_limits() -> None:
    report = make_report(envs=6000)
    summary = summary_markdown(RELEASE, report)
    comment = pr_comment_markdown(RunInfo(kind=RunKind.preview, pr=1, sha=SHA), report, project="p")
    assert len(summary.encode()) <= SUMMARY_LIMIT_BYTES
    assert len(comment) <= COMMENT_LIMIT_CHARS
    # The headline and the facts survive; the tables are what gets dropped.
    assert summary.startswith("## ✅ Flyte deploy · release `v1.2.0`") and "| Version | `v1.2.0` |" in summary
    assert comment.startswith(comment_marker("p"))


def test_bundle_mode_shows_where_the_code_went() -> None:
    report = make_report()
    assert report.deployment is not None
    bundle = BundleArtifact(
        digest="f" * 64,
        size=3 * 1024 * 1024 + 5,
        path=Path("f.tar.gz"),
        uri="s3://bucket/flyte/" + "f" * 64 + ".tar.gz",
        reused=True,
        files=("workflows.py", "lib/a.py"),
    )
    env = report.deployment.environments[0].model_copy(update={"bundle_uri": bundle.uri})
    deployment = report.deployment.model_copy(update={"environments": (env,)})
    text = summary_markdown(
        RELEASE, report.model_copy(update={"artifacts": Artifacts(bundle=bundle), "deployment": deployment})
    )
    assert f"`{bundle.uri}` · sha256 `{'f' * 64}` · 2 files · 3.0 MiB · already in storage" in text
    assert f"| `{bundle.uri}` in `127.0.0.1:5000/acme/prep@{DIGEST}` |" in text
