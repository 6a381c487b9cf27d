"""The GitHub Action adapter: `INPUT_*`, `GITHUB_*` and the event payload in; the pipeline;
`$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`, annotations, the PR comment and deployments out.

- `inputs`: `INPUT_<NAME>` → `ActionInputs` → `DeployRequest`;
- `events`: the trigger → a `Decision` (preview, cleanup, release, branch, build-only, skipped);
- `github_env`: file commands and workflow commands;
- `action`: one run, wiring them to the pipeline and to `deployer.report`.
"""
