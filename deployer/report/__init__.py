"""The run as people see it: the step summary, the sticky PR comment, GitHub deployments.

- `render`: Markdown from `templates/report/` (summary and PR comment);
- `github`: `GitHubReporter`, PyGithub behind bounded retries, failures become warnings;
- `preview`: a PR preview's GitHub side (its `preview/pr-N` deployment, statuses, sticky comment);
- `models`: `RunInfo` (why this run happened) and `CleanupResult` (what a preview cleanup removed).
"""
