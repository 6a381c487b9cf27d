"""`flyte-deploy run` for every shape of task input and output (`tests/projects/shapes`): values typed
as a person types them, outputs printed readably, File/Dir copied in and out. Each task runs in bundle
mode (no Docker: a local virtualenv) and in container mode (the code built into its image, run with the
stack's engine); the project is deployed once per mode for the session (tests/fixtures/shapes.py)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.fixtures.pipeline import CliResult, run_cli
from tests.fixtures.shapes import NO_DOCKER

MODES = ["bundle", pytest.param("container", marks=pytest.mark.stack)]


@pytest.fixture(params=MODES)
def shapes(request: pytest.FixtureRequest) -> tuple[Path, str]:
    """(the deployed project, its mode), once per mode."""
    return request.getfixturevalue(f"shapes_{request.param}"), request.param


def run(deployed: tuple[Path, str], *args: str, cwd: Path | None = None) -> CliResult:
    path, mode = deployed
    where = ["--root-dir", str(path)] if cwd is not None else []
    result = run_cli("run", *args, *where, cwd=cwd or path, env=NO_DOCKER if mode == "bundle" else None)
    assert result.code == 0, result.stderr
    if "--json" in args:
        assert result.json["mode"] == mode
    else:
        assert f"({mode} mode, " in result.stderr
    return result


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["shapes.later", "-i", "when=2024-01-02T03:04:05", "-i", "by=PT2H"], "2024-01-02T05:04:05+00:00"),
        (
            ["shapes.later", "-i", "when=2024-01-02T03:04:05+02:00", "-i", "by=90"],
            "2024-01-02T01:05:35+00:00",
        ),
        (
            ["shapes.later", "-i", "when=2024-01-02T03:04:05Z", "-i", "by=P1DT30M"],
            "2024-01-03T03:34:05+00:00",
        ),
        (["shapes.weekday", "-i", "day=2024-01-02"], "Tuesday"),
        # A date travels as a datetime at midnight UTC: the spec cannot tell the two apart.
        (["shapes.tomorrow", "-i", "day=2024-01-31"], "2024-02-01T00:00:00+00:00"),
        (["shapes.span", "-i", "start=2024-01-01", "-i", "end=2024-01-02T00:30:00Z"], "P1DT30M"),
        (["shapes.complement", "-i", "color=RED"], "GREEN"),
        (["shapes.complement", "-i", "color=green"], "RED"),  # the value of Color.GREEN
        (
            [
                "shapes.midpoint",
                "-i",
                'segment={"start": {"x": 0, "y": 0}, "end": {"x": 2, "y": 4}, "tags": ["a", "b"]}',
            ],
            '{"x": 1.0, "y": 2.0, "label": "a+b"}',
        ),
        (
            ["shapes.bill", "-i", 'order={"item": "pen", "quantity": 3, "rush": true}', "-i", "unit_price=2"],
            '{"order": {"item": "pen", "quantity": 3, "rush": true}, "total": 9.0, '
            '"due": "2024-01-31T00:00:00Z"}',
        ),
        (["shapes.tally", "-i", 'words=["b", "a", "b"]', "-i", 'weights={"b": 10}'], '{"a": 1, "b": 20}'),
        (
            [
                "shapes.flags",
                "-i",
                "on=true",
                "-i",
                "ratio=0.25",
                "-i",
                "count=-3",
                "-i",
                "name=Ada Lovelace",
            ],
            "on=True ratio=0.25 count=-3 name=Ada Lovelace",
        ),
        (["shapes.greet", "-i", "name=Ada"], "Hello, Ada!"),  # every default applied
        (["shapes.greet", "-i", "name=Ada", "-i", "times=2", "-i", "shout=yes"], "HELLO, ADA! HELLO, ADA!"),
        (["shapes.greet", "-i", "name=Ada", "-i", "greeting=Hi", "-i", "shout=null"], "Hi, Ada!"),
        (["shapes.pair", "-i", "n=4"], 'o0 = 8\no1 = "n=4"'),
        (["shapes.nothing_back", "-i", "note=hi"], ""),
    ],
    ids=[
        "datetime-naive+iso-duration",
        "datetime-offset+seconds",
        "datetime-Z+days",
        "date-in",
        "date-out",
        "timedelta-out",
        "enum-name",
        "enum-value",
        "dataclass",
        "pydantic",
        "list+dict",
        "scalars",
        "defaults",
        "optional-given",
        "optional-null",
        "two-outputs",
        "no-output",
    ],
)
def test_value_shapes_round_trip(args: list[str], expected: str, shapes: tuple[Path, str]) -> None:
    assert run(shapes, *args).stdout.strip() == expected


def test_file_and_dir_inputs_are_read_by_the_task(shapes: tuple[Path, str], tmp_path: Path) -> None:
    """Local paths are copied into the run's raw-data dir first, so the task reads them in both modes
    (in container mode that dir is mounted at the same path); a `file://` URI is a local path too."""
    doc = tmp_path / "three lines.txt"
    doc.write_text("a\nb\nc\n")
    tree = tmp_path / "tree"
    (tree / "x").mkdir(parents=True)
    (tree / "x" / "one.txt").write_text("1")
    (tree / "two.txt").write_text("2")

    counted = run(shapes, "shapes.count_lines", "-i", f"doc={doc}", "--json").json
    assert counted["outputs"] == {"o0": 3}
    assert (
        Path(counted["run_dir"]) / "raw" / "inputs" / "doc" / "three lines.txt"
    ).read_text() == "a\nb\nc\n"
    assert run(shapes, "shapes.count_lines", "-i", f"doc={doc.as_uri()}").stdout.strip() == "3"
    # A relative path is read from where `run` is started.
    relative = run(shapes, "shapes.count_lines", "-i", "doc=three lines.txt", cwd=tmp_path)
    assert relative.stdout.strip() == "3"

    listed = run(shapes, "shapes.list_dir", "-i", f"folder={tree}")
    assert json.loads(listed.stdout) == ["two.txt", "x/one.txt"]


def test_storage_uri_inputs_are_fetched_with_the_callers_credentials(
    shapes: tuple[Path, str], s3_client, s3_bucket: str, stack_env: dict[str, str]
) -> None:
    """An `s3://` File/Dir is copied into the run with the caller's S3 access, in both modes: the task
    reads the copy and is never handed the credentials."""
    path, mode = shapes
    prefix = f"run-inputs/{uuid.uuid4().hex[:8]}"
    s3_client.put_object(Bucket=s3_bucket, Key=f"{prefix}/doc.txt", Body=b"x\ny\n")
    for key in ("tree/a.txt", "tree/deep/b.txt"):
        s3_client.put_object(Bucket=s3_bucket, Key=f"{prefix}/{key}", Body=b"-")
    env = {"FLYTE_DEPLOY_S3_ENDPOINT_URL": stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"]}
    env |= NO_DOCKER if mode == "bundle" else {}

    def run_s3(*args: str) -> CliResult:
        return run_cli("run", *args, cwd=path, env=env)

    counted = run_s3("shapes.count_lines", "-i", f"doc=s3://{s3_bucket}/{prefix}/doc.txt", "--json")
    assert counted.code == 0, counted.stderr
    assert counted.json["outputs"] == {"o0": 2}
    listed = run_s3("shapes.list_dir", "-i", f"folder=s3://{s3_bucket}/{prefix}/tree")
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout) == ["a.txt", "deep/b.txt"]

    missing = run_s3("shapes.count_lines", "-i", f"doc=s3://{s3_bucket}/{prefix}/nope.txt")
    assert missing.code != 0
    assert missing.error_line.startswith(
        f"error: --input doc=s3://{s3_bucket}/{prefix}/nope.txt: cannot download"
    )


def test_file_and_dir_outputs_are_downloaded_and_their_paths_printed(shapes: tuple[Path, str]) -> None:
    """The task writes its outputs where it runs (its working dir: inside the container in container
    mode); `run` copies them to the run dir and prints that path, a real file/dir on this host."""
    path, _ = shapes
    report = Path(run(shapes, "shapes.write_report", "-i", "title=Q3", "-i", "lines=2").stdout.strip())
    assert report.is_relative_to(path / ".flyte-deploy" / "runs")
    assert report.parts[-3:] == ("downloads", "o0", "report.txt")
    assert report.read_text() == "# Q3\nline 1\nline 2\n"

    made = run(shapes, "shapes.make_dir", "-i", 'names=["p", "q"]', "--json").json
    folder = Path(made["outputs"]["o0"])
    assert folder == Path(made["run_dir"]) / "downloads" / "o0" / "made"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "sub/p.txt",
        "sub/q.txt",
    ]
    assert (folder / "sub" / "q.txt").read_text() == "q\n"


def test_outputs_go_to_a_download_dir_the_user_names(shapes: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(shapes, "shapes.write_report", "-i", "title=T", "-i", "lines=1", "--download-dir", str(out))
    assert result.stdout.strip() == str(out / "o0" / "report.txt")
    assert (out / "o0" / "report.txt").read_text() == "# T\nline 1\n"


def test_json_output_holds_json_ready_values(shapes: tuple[Path, str]) -> None:
    later = run(shapes, "shapes.later", "-i", "when=2024-01-02", "-i", "by=PT36H", "--json").json
    assert later["outputs"] == {"o0": "2024-01-03T12:00:00+00:00"}
    bill = run(
        shapes, "shapes.bill", "-i", 'order={"item": "ink", "quantity": 2}', "-i", "unit_price=1.5", "--json"
    )
    assert bill.json["outputs"] == {
        "o0": {
            "order": {"item": "ink", "quantity": 2, "rush": False},
            "total": 3.0,
            "due": "2024-01-31T00:00:00Z",
        }
    }
    pair = run(shapes, "shapes.pair", "-i", "n=1", "--json").json
    assert pair["outputs"] == {"o0": 2, "o1": "n=1"}


def test_many_inputs_from_a_file_with_flags_over_it(shapes: tuple[Path, str], tmp_path: Path) -> None:
    (tmp_path / "inputs.yaml").write_text("when: 2024-01-02T03:04:05\nby: 3600\n")
    from_yaml = run(shapes, "shapes.later", "--input-file", str(tmp_path / "inputs.yaml"))
    assert from_yaml.stdout.strip() == "2024-01-02T04:04:05+00:00"
    overridden = run(shapes, "shapes.later", "--input-file", str(tmp_path / "inputs.yaml"), "-i", "by=PT1M")
    assert overridden.stdout.strip() == "2024-01-02T03:05:05+00:00"

    (tmp_path / "order.json").write_text(
        json.dumps({"order": {"item": "pen", "quantity": 1}, "unit_price": 4})
    )
    from_json = run(shapes, "shapes.bill", "--input-file", str(tmp_path / "order.json"))
    assert json.loads(from_json.stdout)["total"] == 4.0
    (tmp_path / "words.yml").write_text("words: [x, y, x]\nweights:\n  x: 2\n")
    assert json.loads(run(shapes, "shapes.tally", "--input-file", str(tmp_path / "words.yml")).stdout) == {
        "x": 4,
        "y": 1,
    }


# ---------------------------------------------------------------------------------------------- bad values

BAD_VALUES = [
    (
        ["shapes.later", "-i", "when=yesterday", "-i", "by=PT1H"],
        "error: --input when=yesterday: expected an ISO 8601 datetime (e.g. 2024-01-02T03:04:05), "
        "got 'yesterday'",
    ),
    (
        ["shapes.later", "-i", "when=2024-01-02", "-i", "by=2h"],
        "error: --input by=2h: expected a duration: ISO 8601 (e.g. PT2H, P1DT30M) or seconds (e.g. 90), "
        "got '2h'",
    ),
    (
        ["shapes.later", "-i", "when=2024-01-02", "-i", "by=P1M"],
        "error: --input by=P1M: expected a duration: ISO 8601 (e.g. PT2H, P1DT30M) or seconds (e.g. 90), "
        "got 'P1M' (years and months have no fixed length: use days)",
    ),
    (
        ["shapes.complement", "-i", "color=purple"],
        "error: --input color=purple: expected one of RED, GREEN, BLUE, got 'purple'",
    ),
    (
        ["shapes.midpoint", "-i", 'segment={"start": {"x": 1}, "end": {"x": 2, "y": 2}}'],
        'error: --input segment={"start": {"x": 1}, "end": {"x": 2, "y": 2}}: start: expected a Point: '
        "a JSON object with x, y and optionally label, got {\"x\": 1} ('y' is missing)",
    ),
    (
        ["shapes.midpoint", "-i", 'segment={"start": {"x": "left", "y": 0}, "end": {"x": 2, "y": 2}}'],
        "start.x: expected a number, got 'left'",
    ),
    (
        ["shapes.midpoint", "-i", 'segment={"begin": {}}'],
        'error: --input segment={"begin": {}}: expected a Segment: a JSON object with start, end and '
        "optionally tags, got {\"begin\": {}} (no field 'begin')",
    ),
    (
        ["shapes.midpoint", "-i", "segment={start: 1}"],
        "error: --input segment={start: 1}: expected a Segment: a JSON object with start, end and optionally "
        "tags, got '{start: 1}' (not valid JSON: Expecting property name enclosed in double quotes)",
    ),
    (
        ["shapes.bill", "-i", 'order={"item": "pen", "quantity": "many"}', "-i", "unit_price=1"],
        'error: --input order={"item": "pen", "quantity": "many"}: quantity: expected an integer, '
        "got 'many'",
    ),
    (
        ["shapes.tally", "-i", 'words=["a", 2]', "-i", "weights={}"],
        'error: --input words=["a", 2]: [1]: expected a string, got 2',
    ),
    (
        ["shapes.tally", "-i", "words=[]", "-i", 'weights={"a": 1.5}'],
        'error: --input weights={"a": 1.5}: a: expected an integer, got 1.5',
    ),
    (
        ["shapes.flags", "-i", "on=maybe", "-i", "ratio=1", "-i", "count=1", "-i", "name=x"],
        "error: --input on=maybe: expected true or false, got 'maybe'",
    ),
    (
        ["shapes.flags", "-i", "on=no", "-i", "ratio=1", "-i", "count=1.5", "-i", "name=x"],
        "error: --input count=1.5: expected an integer, got '1.5'",
    ),
    (
        ["shapes.greet", "-i", "name=x", "-i", "shout=perhaps"],
        "error: --input shout=perhaps: expected true or false or null, got 'perhaps'",
    ),
    (
        ["shapes.count_lines", "-i", "doc=missing.txt"],
        "error: --input doc=missing.txt: expected a File: a local file or a storage URI, got 'missing.txt' "
        "(no such file or directory)",
    ),
    (
        ["shapes.count_lines", "-i", "doc=."],
        "error: --input doc=.: expected a File: a local file or a storage URI, got '.' "
        "(a directory, not a file)",
    ),
    (
        ["shapes.list_dir", "-i", "folder=workflows.py"],
        "error: --input folder=workflows.py: expected a Dir: a local directory or a storage URI, "
        "got 'workflows.py' (a file, not a directory)",
    ),
    (["shapes.greet", "-i", "greeting=Hi"], "error: task shapes.greet needs --input for: name"),
    (
        ["shapes.greet", "-i", "nme=Ada"],
        "error: --input nme: task shapes.greet has no such input (inputs: greeting, name, shout, times)",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[" ".join(a[1:])[:40] for a, _ in BAD_VALUES])
def test_a_value_the_type_cannot_take_is_one_clear_line(
    args: list[str], message: str, shapes_bundle: Path
) -> None:
    _one_clear_line(shapes_bundle, args, message)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "in.yaml",
            "when: [1, 2\n",
            "error: --input-file in.yaml: not valid YAML at line 2: expected ',' or ']'",
        ),
        ("in.json", "{", "error: --input-file in.json: not valid JSON: Expecting property name"),
        (
            "in.json",
            "[1]",
            "error: --input-file in.json: expected a mapping of input name to value, got a list",
        ),
        ("in.toml", "when = 1", "error: --input-file in.toml: expected a .json, .yaml or .yml file"),
        (
            "in.yaml",
            "when: yesterday\nby: 1\n",
            "error: in.yaml: when: expected an ISO 8601 datetime (e.g. 2024-01-02T03:04:05), got 'yesterday'",
        ),
        ("in.yaml", "when: 2024-01-02\nby: [1]\n", "error: in.yaml: by: expected a duration: ISO 8601"),
        ("in.yaml", "wen: 2024-01-02\n", "error: in.yaml: wen: task shapes.later has no such input"),
    ],
    ids=[
        "bad-yaml",
        "bad-json",
        "not-a-mapping",
        "unknown-suffix",
        "bad-value",
        "wrong-kind",
        "unknown-name",
    ],
)
def test_a_bad_input_file_is_one_clear_line(
    name: str, content: str, message: str, shapes_bundle: Path
) -> None:
    (shapes_bundle / name).write_text(content)
    _one_clear_line(shapes_bundle, ["shapes.later", "--input-file", name], message)


def test_a_missing_input_file_is_one_clear_line(shapes_bundle: Path) -> None:
    _one_clear_line(
        shapes_bundle,
        ["shapes.later", "--input-file", "nope.json"],
        "error: --input-file nope.json: no such file",
    )


def _one_clear_line(deployed: Path, args: list[str], message: str) -> None:
    runs = deployed / ".flyte-deploy" / "runs"
    before = set(runs.glob("*"))
    result = run_cli("run", *args, cwd=deployed, env=NO_DOCKER)
    assert result.code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    if message.startswith("error: "):
        assert result.error_line.startswith(message), result.stderr
    else:
        assert message in result.error_line, result.stderr
    assert set(runs.glob("*")) == before  # nothing was started


@pytest.mark.parametrize(
    ("typed", "seconds", "printed"),
    [
        ("PT2H", 7200, "PT2H"),
        ("P1DT30M", 86400 + 1800, "P1DT30M"),
        ("pt1.5s", 1.5, "PT1.5S"),
        ("P2W", 14 * 86400, "P14D"),
        ("-PT90M", -5400, "-PT1H30M"),
        ("90", 90, "PT1M30S"),
        ("0", 0, "PT0S"),
    ],
)
def test_durations_read_and_print_as_iso_8601(typed: str, seconds: float, printed: str) -> None:
    import datetime as dt

    from deployer.runner.values import Reader, iso_duration

    value = Reader(lambda path, kind: str(path)).from_text(typed, dt.timedelta)
    assert value == dt.timedelta(seconds=seconds)
    assert iso_duration(value) == printed
    assert Reader(lambda path, kind: str(path)).from_text(printed, dt.timedelta) == value


def test_container_paths_are_read_inside_the_run_dir(tmp_path: Path) -> None:
    """Paths named by a container-mode task's outputs: the mount as it is, anything else copied out of
    the container under the run dir, whatever `..` the task writes."""
    from deployer.runner.container_files import ContainerFiles

    run_dir = tmp_path / "r1"
    files = ContainerFiles(mounted=run_dir, copied=run_dir / "container-files")
    assert files.on_host(f"{run_dir}/raw/a.txt") == run_dir / "raw" / "a.txt"
    assert files.on_host("/root/report.txt") == run_dir / "container-files" / "root" / "report.txt"
    assert files.on_host("/root/../../etc/passwd") == run_dir / "container-files" / "etc" / "passwd"
    (run_dir / "raw").mkdir(parents=True)
    (run_dir / "raw" / "link").symlink_to("/etc/hostname")
    assert not files.holds(run_dir / "raw" / "link")
    assert files.holds(run_dir / "raw")
