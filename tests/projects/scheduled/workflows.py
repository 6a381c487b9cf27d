"""Scheduled reports next to the apps that serve them: `reports` depends on the app `report-docs`.

`report-api` is served by its `@server` function, which flyte's `fserve` loads from the code bundle (so it
ships in the bundle in every mode); `report-docs` runs a command (`args`), so in container mode it serves
the code baked into its image.

Triggers of every kind the SDK offers: a cron schedule with a time zone that binds the scheduled time and
an input, a fixed rate that stays paused (`auto_activate=False`), and an on-demand one with inputs and a
custom context. `archive` has no dependency, so it deploys first. Every environment uses `image`, Flyte's
default base: deployed as-is in bundle mode, built with the code in container mode."""

from datetime import datetime

import flyte
import flyte.app
from report_lib.render import headline

image = flyte.Image.from_debian_base(python_version=(3, 11))

api = flyte.app.AppEnvironment(
    name="report-api",
    image=image,
    port=8080,
    requires_auth=False,
    description="Serves the latest report",
    env_vars={"REPORTS_DIR": "/tmp/reports"},
)


@api.server
def serve() -> None:
    import http.server

    http.server.ThreadingHTTPServer(("", 8080), http.server.SimpleHTTPRequestHandler).serve_forever()


docs = flyte.app.AppEnvironment(
    name="report-docs",
    image=image,
    port=8081,
    args=["python", "-m", "http.server", "8081"],
    requires_auth=False,
)

archive = flyte.TaskEnvironment(name="archive", image=image)
reports = flyte.TaskEnvironment(name="reports", image=image, depends_on=[docs])

nightly = flyte.Trigger(
    "nightly",
    flyte.Cron("0 2 * * *", timezone="America/New_York"),
    inputs={"when": flyte.TriggerTime, "region": "eu"},
    description="Nightly report for Europe",
)
hourly = flyte.Trigger("hourly-refresh", flyte.FixedRate(60), auto_activate=False)
on_demand = flyte.Trigger("on-demand", inputs={"region": "apac"}, custom_context={"team": "data"})


@reports.task(triggers=[nightly, hourly])
async def build_report(when: datetime, region: str = "us") -> str:
    return headline(region, when)


@reports.task(triggers=[on_demand])
async def adhoc(region: str) -> str:
    return headline(region, datetime(2024, 1, 1))


@archive.task
async def compress(name: str) -> str:
    return f"{name}.tar.gz"
