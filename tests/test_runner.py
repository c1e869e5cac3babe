"""The pipeline runner, end to end: real papermill, a real kernel, tiny notebooks.

The two-stage test pipeline: ``make`` reads ``inputs/numbers.txt``, multiplies by ``factor``
and writes ``data/made.json`` (recording results); ``total`` sums it into
``reports/total.json``. One base run is executed per module; each test copies its project and
workspace, so incremental behaviour is tested against a real previous run without re-paying
for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import os
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pytest
from filelock import FileLock
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from creditrisk.pipeline import fingerprints, records
from creditrisk.pipeline.config import (
    PipelineConfig,
    PipelineConfigError,
    load_pipeline_config,
    parse_pipeline_config,
    render_template,
)
from creditrisk.pipeline.fingerprints import Fingerprint, HashCache, fingerprint, notebook_sha256
from creditrisk.pipeline.records import RunRecord, latest_run_id, point_latest
from creditrisk.pipeline.runner import (
    PipelineLocked,
    RunExists,
    StageFailed,
    parse_overrides,
    resolve_parameters,
    run_pipeline,
    select_stages,
)
from creditrisk.provenance import to_json_value
from creditrisk.settings import Workspace
from creditrisk.stages.results import read_results, record

# One worker runs this whole module under `pytest -n 2 --dist loadgroup`, so the base run below
# (a module fixture) executes once.
pytestmark = pytest.mark.xdist_group("pipeline-runner")

KERNEL = "creditrisk"

PIPELINE_YAML = """\
kernel: creditrisk
stages:
  - name: make
    notebook: notebooks/01_make.ipynb
    parameters: {factor: 2, fail: false}
    inputs: [inputs/numbers.txt]
    outputs: [data/made.json]
  - name: total
    notebook: notebooks/02_total.ipynb
    parameters: {label: sum}
    inputs: [data/made.json]
    outputs: [reports/total.json]
"""

MAKE_CELLS = [
    "import json\nimport os\nfrom pathlib import Path\n\n"
    "from creditrisk.stages.results import record",
    "factor: int = 2  # multiplies every number\nfail: bool = False  # raise, to test failures",
    "if fail:\n    raise ValueError('boom: failure requested')",
    "numbers = [int(word) for word in Path('inputs/numbers.txt').read_text().split()]\n"
    "made = [number * factor for number in numbers]\n"
    "Path('data').mkdir(exist_ok=True)\n"
    "Path('data/made.json').write_text(json.dumps(made))",
    "record(\n    total=sum(made),\n    count=len(made),\n    nothing=None,\n    text='42',\n"
    "    home=os.environ['CREDITRISK_HOME'],\n    run_id=os.environ['CREDITRISK_RUN_ID'],\n"
    "    cwd=os.getcwd(),\n)",
]

TOTAL_CELLS = [
    "import json\nfrom pathlib import Path",
    "label: str = 'sum'  # key of the total in the report",
    "made = json.loads(Path('data/made.json').read_text())\n"
    "Path('reports').mkdir(exist_ok=True)\n"
    "Path('reports/total.json').write_text(json.dumps({label: sum(made)}))",
]


def write_notebook(path: Path, cells: list[str], parameters_cell: int = 1) -> None:
    """A notebook of code cells, the one at ``parameters_cell`` tagged ``parameters``."""
    notebook = new_notebook(
        cells=[new_markdown_cell(f"# {path.stem}")]
        + [
            new_code_cell(source, metadata={"tags": ["parameters"]} if i == parameters_cell else {})
            for i, source in enumerate(cells)
        ],
        metadata={"kernelspec": {"name": KERNEL, "display_name": KERNEL, "language": "python"}},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)


@dataclasses.dataclass
class Setup:
    """A project (pipeline.yaml + notebooks) and a workspace."""

    project: Path
    workspace: Path
    lines: list[str] = dataclasses.field(default_factory=list)

    @property
    def runs(self) -> Path:
        return self.workspace / "runs"

    def run(self, **kwargs: Any) -> RunRecord:
        self.lines.clear()
        return run_pipeline(
            self.project / "pipeline.yaml", self.workspace, echo=self.lines.append, **kwargs
        )

    def statuses(self, run: RunRecord) -> dict[str, str]:
        return {stage.name: stage.status for stage in run.stages}


@pytest.fixture(scope="module")
def base(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Setup, RunRecord]:
    """One successful run of the two-stage pipeline in a fresh workspace."""
    root = tmp_path_factory.mktemp("base")
    setup = Setup(project=root / "project", workspace=root / "workspace")
    write_notebook(setup.project / "notebooks/01_make.ipynb", MAKE_CELLS)
    write_notebook(setup.project / "notebooks/02_total.ipynb", TOTAL_CELLS)
    (setup.project / "pipeline.yaml").write_text(PIPELINE_YAML)
    (setup.workspace / "inputs").mkdir(parents=True)
    (setup.workspace / "inputs/numbers.txt").write_text("1 2 3\n")
    return setup, setup.run()


@pytest.fixture
def copy(base: tuple[Setup, RunRecord], tmp_path: Path) -> Setup:
    """A private copy of the base project and workspace, after the base run."""
    original, _ = base
    setup = Setup(project=tmp_path / "project", workspace=tmp_path / "workspace")
    shutil.copytree(original.project, setup.project)
    shutil.copytree(original.workspace, setup.workspace, symlinks=True)
    return setup


# --- a successful run ------------------------------------------------------------------------


def test_run_writes_notebooks_html_and_run_json(base: tuple[Setup, RunRecord]) -> None:
    setup, run = base
    run_dir = setup.runs / run.run_id
    for name in ("01_make.ipynb", "01_make.html", "02_total.ipynb", "02_total.html", "run.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((setup.workspace / "reports/total.json").read_text()) == {"sum": 12}

    written = RunRecord.read(run_dir / "run.json")
    assert written == run
    assert run.status == "succeeded" and run.finished is not None
    assert setup.statuses(run) == {"make": "succeeded", "total": "succeeded"}
    assert run.git.commit is None  # the test project is not a git repository
    assert run.user and run.host and run.packages["papermill"]

    make = run.stage("make")
    assert make.parameters == {"factor": 2, "fail": False}
    assert make.html == f"runs/{run.run_id}/01_make.html"
    assert make.inputs["inputs/numbers.txt"].kind == "file"
    assert make.outputs["data/made.json"] == Fingerprint(
        kind="file",
        digest=fingerprints.file_sha256(setup.workspace / "data/made.json"),
        files=1,
        bytes=len("[2, 4, 6]"),
    )
    assert make.duration_s is not None and make.duration_s > 0
    assert setup.lines == [
        "[1/2] make  running …",
        f"[1/2] make  ok in {make.duration_s:.1f} s → runs/{run.run_id}/01_make.html",
        "[2/2] total running …",
        f"[2/2] total ok in {run.stage('total').duration_s:.1f} s → "
        f"runs/{run.run_id}/02_total.html",
    ]


def test_glued_results_reach_run_json_exactly(base: tuple[Setup, RunRecord]) -> None:
    setup, run = base
    expected = {
        "total": 12,
        "count": 3,
        "nothing": None,
        "text": "42",  # a string that looks like JSON stays a string
        "home": str(setup.workspace.resolve()),
        "run_id": run.run_id,
        "cwd": str(setup.workspace.resolve()),  # notebooks run in the workspace
    }
    assert run.stage("make").results == expected
    assert read_results(setup.runs / run.run_id / "01_make.ipynb") == expected
    assert run.stage("total").results == {}


def test_environment_is_restored_and_latest_points_at_the_run(
    base: tuple[Setup, RunRecord],
) -> None:
    setup, run = base
    assert os.environ.get("CREDITRISK_RUN_ID") is None
    assert (setup.runs / "latest").is_symlink()
    assert latest_run_id(setup.runs) == run.run_id
    assert (setup.runs / "latest/run.json").is_file()


def test_html_shows_parameters_and_recorded_results(base: tuple[Setup, RunRecord]) -> None:
    setup, run = base
    html = (setup.runs / run.run_id / "01_make.html").read_text()
    assert "<html" in html and "injected-parameters" in html  # papermill's injected cell
    assert "recorded results" in html
    assert "application/scrapbook" not in html  # payloads stay invisible


# --- incremental runs ------------------------------------------------------------------------


def test_unchanged_stages_are_skipped_and_outputs_reused(
    copy: Setup, base: tuple[Setup, RunRecord]
) -> None:
    _, first = base
    made = copy.workspace / "data/made.json"
    mtime = made.stat().st_mtime_ns

    run = copy.run()

    assert copy.statuses(run) == {"make": "skipped", "total": "skipped"}
    assert run.status == "succeeded"
    assert made.stat().st_mtime_ns == mtime
    make = run.stage("make")
    assert make.reused_from == first.run_id
    assert make.results == first.stage("make").results
    assert make.code is not None and make.code.same_as(first.stage("make").code)
    assert copy.lines[0] == f"[1/2] make  skipped (unchanged since run {first.run_id})"
    assert latest_run_id(copy.runs) == run.run_id


def test_a_run_that_reuses_every_stage_still_holds_every_record(
    copy: Setup, base: tuple[Setup, RunRecord]
) -> None:
    """Finding 4: after a re-run that skips every stage, runs/latest held only run.json."""
    _, first = base
    original = (copy.runs / first.run_id / "01_make.html").read_text()

    run = copy.run()

    run_dir = copy.runs / run.run_id
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "01_make.html",
        "02_total.html",
        "run.json",
    ]
    for stage in run.stages:
        assert stage.html == f"runs/{run.run_id}/{Path(stage.html or '').name}"
        page = (copy.workspace / (stage.html or "")).read_text()
        banner = page[page.index('id="creditrisk-reused"') :][:600]
        assert f"Reused from run {first.run_id}" in banner and run.run_id in banner
        assert page.index('id="creditrisk-reused"') < page.index("injected-parameters")
    # The producing run's record is untouched (records are immutable) and is what was copied.
    assert (copy.runs / first.run_id / "01_make.html").read_text() == original
    copied = (run_dir / "01_make.html").read_text()
    assert copied.replace(copied[copied.index("<div id=") : copied.index("</div>") + 6], "") == (
        original
    )
    assert (copy.runs / "latest" / "01_make.html").is_file()


def test_a_stage_whose_record_is_gone_is_run_again(
    copy: Setup, base: tuple[Setup, RunRecord]
) -> None:
    """A skip must leave a complete record: without the producing run's HTML, the stage runs."""
    _, first = base
    (copy.runs / first.run_id / "01_make.html").unlink()

    run = copy.run()

    assert copy.statuses(run) == {"make": "succeeded", "total": "skipped"}


def test_parameter_change_reruns_the_stage_and_downstream(copy: Setup) -> None:
    run = copy.run(overrides={"make.factor": 3})

    assert copy.statuses(run) == {"make": "succeeded", "total": "succeeded"}
    assert run.stage("make").parameters["factor"] == 3
    assert run.overrides == {"make.factor": 3}
    assert json.loads((copy.workspace / "reports/total.json").read_text()) == {"sum": 18}


def test_notebook_change_reruns_only_that_stage(copy: Setup) -> None:
    write_notebook(copy.project / "notebooks/02_total.ipynb", [*TOTAL_CELLS, "checked = True"])

    run = copy.run()

    assert copy.statuses(run) == {"make": "skipped", "total": "succeeded"}


def test_input_change_reruns_the_stage_and_downstream(copy: Setup) -> None:
    (copy.workspace / "inputs/numbers.txt").write_text("10 20\n")

    run = copy.run()

    assert copy.statuses(run) == {"make": "succeeded", "total": "succeeded"}
    assert json.loads((copy.workspace / "reports/total.json").read_text()) == {"sum": 60}


def test_force_reruns_unchanged_stages(copy: Setup) -> None:
    run = copy.run(force=True, only=["total"])

    assert copy.statuses(run) == {"total": "succeeded"}
    assert run.force is True


def test_deleted_output_reruns_its_stage_but_identical_output_stops_propagation(
    copy: Setup,
) -> None:
    (copy.workspace / "data/made.json").unlink()

    run = copy.run()

    # make writes the same bytes again, so total's input is unchanged.
    assert copy.statuses(run) == {"make": "succeeded", "total": "skipped"}


def test_modified_output_reruns_its_stage(copy: Setup) -> None:
    (copy.workspace / "reports/total.json").write_text('{"sum": -1}')

    run = copy.run(only=["total"])

    assert copy.statuses(run) == {"total": "succeeded"}
    assert json.loads((copy.workspace / "reports/total.json").read_text()) == {"sum": 12}


def test_input_generated_by_its_own_stage_does_not_force_a_rerun(
    kernel: str, tmp_path: Path
) -> None:
    """Synthetic raw data is generated by ingest on demand: it must not re-run ingest next time."""
    setup = Setup(project=tmp_path / "project", workspace=tmp_path / "workspace")
    cells = [
        "from pathlib import Path",
        "source: str = ''  # raw data directory; generated when empty",
        "raw = Path(source or 'raw')\n"
        "if not raw.exists():\n"
        "    raw.mkdir()\n"
        "    (raw / 'a.csv').write_text('x\\n1\\n')\n"
        "Path('bronze.txt').write_text((raw / 'a.csv').read_text())",
    ]
    write_notebook(setup.project / "notebooks/01_ingest.ipynb", cells)
    (setup.project / "pipeline.yaml").write_text(
        "stages:\n"
        "  - name: ingest\n"
        "    notebook: notebooks/01_ingest.ipynb\n"
        "    parameters: {source: ''}\n"
        "    inputs: ['{source|raw}']\n"
        "    outputs: [bronze.txt]\n"
    )

    first = setup.run()
    second = setup.run()

    assert first.stage("ingest").inputs["raw"].kind == "missing"  # as the stage found it
    assert setup.statuses(second) == {"ingest": "skipped"}


# --- failures --------------------------------------------------------------------------------


def test_failure_renders_html_raises_and_records(
    copy: Setup, base: tuple[Setup, RunRecord]
) -> None:
    _, first = base
    with pytest.raises(StageFailed) as caught:
        copy.run(overrides={"fail": True}, run_id="failing-run")

    failure = caught.value
    html = copy.runs / "failing-run/01_make.html"
    assert failure.stage == "make"
    assert failure.html_path == html
    assert failure.run_id == "failing-run"
    assert "'make'" in str(failure) and str(html) in str(failure)
    assert "boom: failure requested" in str(failure)
    page = html.read_text()
    assert "ValueError" in page and "boom: failure requested" in page

    run = RunRecord.read(copy.runs / "failing-run/run.json")
    assert run.status == "failed" and run.finished is not None
    assert copy.statuses(run) == {"make": "failed", "total": "not-run"}
    make = run.stage("make")
    assert make.error is not None
    assert (make.error.type, make.error.message) == ("ValueError", "boom: failure requested")
    assert make.html == "runs/failing-run/01_make.html"
    assert copy.lines[-1].startswith("[1/2] make  FAILED after ")
    assert latest_run_id(copy.runs) == "failing-run"
    assert (copy.workspace / "data/made.json").is_file()

    # The failure does not invalidate the last successful run: back to the defaults, skip.
    again = copy.run()
    assert copy.statuses(again) == {"make": "skipped", "total": "skipped"}
    assert again.stage("make").reused_from == first.run_id


def test_missing_declared_output_fails_the_stage(copy: Setup) -> None:
    yaml_path = copy.project / "pipeline.yaml"
    yaml_path.write_text(
        yaml_path.read_text().replace(
            "outputs: [reports/total.json]", "outputs: [reports/total.json, reports/extra.json]"
        )
    )

    with pytest.raises(StageFailed, match=r"reports/extra\.json") as caught:
        copy.run(only=["total"])

    assert caught.value.html_path is not None and caught.value.html_path.is_file()


# --- runs, locks, selection ------------------------------------------------------------------


def test_explicit_existing_run_id_is_refused(copy: Setup, base: tuple[Setup, RunRecord]) -> None:
    _, first = base
    before = (copy.runs / first.run_id / "run.json").read_text()

    with pytest.raises(RunExists, match="immutable"):
        copy.run(run_id=first.run_id)

    assert (copy.runs / first.run_id / "run.json").read_text() == before
    with pytest.raises(PipelineConfigError, match="bad run id"):
        copy.run(run_id="latest")


def test_run_ids_sort_by_time_and_are_unique() -> None:
    early = dt.datetime(2026, 11, 22, 6, 15, tzinfo=dt.UTC)
    ids = {records.new_run_id(early) for _ in range(100)}
    assert len(ids) == 100
    assert all(run_id.startswith("20261122T061500Z-") for run_id in ids)
    assert max(ids) < records.new_run_id(early + dt.timedelta(seconds=1))


def test_lock_held_by_another_holder_is_refused(copy: Setup) -> None:
    runs_before = sorted(copy.runs.iterdir())
    lock = FileLock(Workspace(copy.workspace).lock_file)
    with lock, pytest.raises(PipelineLocked, match="is in use by another process"):
        copy.run()
    assert sorted(copy.runs.iterdir()) == runs_before  # nothing was started


def test_lock_message_names_the_run_holding_it(copy: Setup) -> None:
    attempts: list[PipelineLocked] = []

    def echo_and_start_another_run(line: str) -> None:
        # Called while the first run holds the lock.
        try:
            run_pipeline(copy.project / "pipeline.yaml", copy.workspace, echo=lambda _: None)
        except PipelineLocked as exc:
            attempts.append(exc)

    run_pipeline(
        copy.project / "pipeline.yaml",
        copy.workspace,
        run_id="holder",
        echo=echo_and_start_another_run,
    )

    assert attempts and "run holder (pid " in str(attempts[0])
    assert attempts[0].holder["pid"] == os.getpid()
    assert copy.run().status == "succeeded"  # released afterwards


def test_selection_runs_only_the_chosen_stages(copy: Setup) -> None:
    assert [stage.name for stage in copy.run(only=["total"]).stages] == ["total"]
    assert [stage.name for stage in copy.run(from_stage="total").stages] == ["total"]
    assert [stage.name for stage in copy.run(to_stage="make").stages] == ["make"]
    assert copy.lines == [f"[1/1] make skipped (unchanged since run {_base_id(copy)})"]


def _base_id(setup: Setup) -> str:
    state = records.PipelineState.load(setup.runs / records.STATE_FILE)
    return state.stages["make"].run_id


def three_stage_config(tmp_path: Path) -> PipelineConfig:
    return parse_pipeline_config(
        {
            "stages": [
                {"name": "ingest", "notebook": "a.ipynb", "parameters": {"seed": 1, "size": "s"}},
                {"name": "features", "notebook": "b.ipynb"},
                {"name": "train", "notebook": "c.ipynb", "parameters": {"seed": 2}},
            ]
        },
        project_root=tmp_path,
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["ingest", "features", "train"]),
        ({"from_stage": "features"}, ["features", "train"]),
        ({"to_stage": "features"}, ["ingest", "features"]),
        ({"from_stage": "features", "to_stage": "features"}, ["features"]),
        ({"only": ["train", "ingest"]}, ["ingest", "train"]),
        ({"only": "train"}, ["train"]),
    ],
)
def test_select_stages(tmp_path: Path, kwargs: dict[str, object], expected: list[str]) -> None:
    config = three_stage_config(tmp_path)
    assert [stage.name for stage in select_stages(config, **kwargs)] == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"only": ["trian"]}, "unknown stage 'trian'; stages are: ingest, features, train"),
        ({"from_stage": "nope"}, "unknown stage 'nope'"),
        ({"from_stage": "train", "to_stage": "ingest"}, "'train' comes after 'ingest'"),
        ({"only": ["train"], "from_stage": "ingest"}, "either only or from/to"),
        ({"only": []}, "selects no stage"),
    ],
)
def test_select_stages_errors(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PipelineConfigError, match=message):
        select_stages(three_stage_config(tmp_path), **kwargs)  # type: ignore[arg-type]


# --- parameters and overrides ----------------------------------------------------------------


def test_parse_overrides_uses_yaml_rules() -> None:
    assert parse_overrides(
        [
            "seed=7",
            "ingest.size=tiny",
            "ratio=0.5",
            "flag=true",
            "source=",
            "none=null",
            "as_of=2024-01-31",
            "ids=[1, 2]",
            "data=s3://bucket/prefix",
            "seed=8",
        ]
    ) == {
        "seed": 8,
        "ingest.size": "tiny",
        "ratio": 0.5,
        "flag": True,
        "source": "",
        "none": None,
        "as_of": "2024-01-31",  # dates stay strings: papermill injects JSON-like values only
        "ids": [1, 2],
        "data": "s3://bucket/prefix",
    }


@pytest.mark.parametrize("item", ["seed", "=3", "a.b.c=1", "bad key=1", "x=[1, 2"])
def test_parse_overrides_rejects_malformed_items(item: str) -> None:
    with pytest.raises(PipelineConfigError, match="override"):
        parse_overrides([item])


def test_overrides_apply_to_declaring_stages_and_qualified_ones_win(tmp_path: Path) -> None:
    config = three_stage_config(tmp_path)
    parameters = resolve_parameters(
        config, config.stages, {"train.seed": 9, "seed": 7, "size": np.int64(3)}
    )
    assert parameters == {
        "ingest": {"seed": 7, "size": 3},
        "features": {},
        "train": {"seed": 9},
    }


def test_overrides_for_unselected_stages_are_accepted_but_unused(tmp_path: Path) -> None:
    config = three_stage_config(tmp_path)
    selected = select_stages(config, only=["features"])
    assert resolve_parameters(config, selected, {"seed": 3, "ingest.size": "m"}) == {"features": {}}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sead": 1}, r"unknown parameter override 'sead': no stage declares it"),
        ({"features.seed": 1}, r"'features.seed': stage 'features' declares no parameters"),
        ({"ingest.sead": 1}, r"'ingest.sead': stage 'ingest' declares seed, size"),
        ({"trian.seed": 1}, r"unknown stage 'trian'"),
        ({"seed": object()}, r"'seed': cannot record a value of type object"),
    ],
)
def test_unknown_overrides_are_errors(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    config = three_stage_config(tmp_path)
    with pytest.raises(PipelineConfigError, match=message):
        resolve_parameters(config, config.stages, overrides)


def test_unknown_override_is_refused_before_anything_runs(copy: Setup) -> None:
    with pytest.raises(PipelineConfigError, match="'factr'"):
        copy.run(overrides={"factr": 3})
    assert latest_run_id(copy.runs) == _base_id(copy)


# --- pipeline.yaml ---------------------------------------------------------------------------


def test_load_pipeline_config(base: tuple[Setup, RunRecord]) -> None:
    setup, _ = base
    config = load_pipeline_config(setup.project / "pipeline.yaml")
    assert config.project_root == setup.project.resolve()
    assert config.kernel == KERNEL
    assert config.stage_names == ["make", "total"]
    assert config.position("total") == 2
    assert config.stage("make").parameters == {"factor": 2, "fail": False}
    assert config.stage("make").skip_unchanged is True


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"name": "ingest"}], "stage 'ingest', field 'notebook': Field required"),
        (
            [{"name": "ingest", "notebook": "a.ipynb", "parameters": {"bad-name": 1}}],
            "stage 'ingest', field 'parameters': 'bad-name' is not a valid Python variable",
        ),
        (
            [{"name": "ingest", "notebook": "a.ipynb", "inputs": ["{sorce}"]}],
            r"stage 'ingest', field 'inputs': \[0\] '\{sorce\}': \{sorce\} is not a parameter",
        ),
        (
            [{"name": "train", "notebook": "a.ipynb", "outputs": ["s3://b/model"]}],
            "stage 'train', field 'outputs': .* outputs must be local paths",
        ),
        (
            [{"name": "ingest", "notebook": "a.ipynb", "colour": "red"}],
            "stage 'ingest', field 'colour': Extra inputs are not permitted",
        ),
        ([{"notebook": "a.ipynb"}], r"stages\[0\], field 'name': Field required"),
        (
            [{"name": "a", "notebook": "a.ipynb"}, {"name": "a", "notebook": "b.ipynb"}],
            "stage names must be unique; repeated: a",
        ),
        ([], "field 'stages': List should have at least 1 item"),
    ],
)
def test_config_errors_name_the_stage_and_field(
    tmp_path: Path, stages: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(PipelineConfigError, match=message):
        parse_pipeline_config({"stages": stages}, project_root=tmp_path)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match="not found"):
        load_pipeline_config(tmp_path / "pipeline.yaml")
    (tmp_path / "pipeline.yaml").write_text("stages: [\n")
    with pytest.raises(PipelineConfigError, match="not valid YAML"):
        load_pipeline_config(tmp_path / "pipeline.yaml")


def test_missing_notebook_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        "stages:\n  - {name: ingest, notebook: notebooks/01_ingest.ipynb}\n"
    )
    with pytest.raises(PipelineConfigError, match=r"stage 'ingest': notebook .* not found"):
        run_pipeline(tmp_path / "pipeline.yaml", tmp_path / "ws", echo=lambda _: None)
    assert not (tmp_path / "ws/runs").exists()


@pytest.mark.parametrize(
    ("template", "parameters", "expected"),
    [
        ("data/bronze", {}, "data/bronze"),
        ("{source|data/raw}", {"source": ""}, "data/raw"),
        ("{source|data/raw}", {"source": None}, "data/raw"),
        ("{source|data/raw}", {"source": "s3://b/p"}, "s3://b/p"),
        ("{source}", {"source": ""}, ""),
        ("reports/{size}-{seed}.json", {"size": "tiny", "seed": 7}, "reports/tiny-7.json"),
        ("{project}/sql", {}, "/project/sql"),
        ("{home}/x", {}, "/home/x"),
    ],
)
def test_render_template(template: str, parameters: dict[str, object], expected: str) -> None:
    rendered = render_template(template, parameters, home=Path("/home"), project=Path("/project"))
    assert rendered == expected


# --- fingerprints ----------------------------------------------------------------------------


def test_directory_fingerprint_covers_names_and_contents(tmp_path: Path) -> None:
    cache = HashCache(tmp_path / "cache.json")
    (tmp_path / "d/sub").mkdir(parents=True)
    (tmp_path / "d/a.csv").write_text("1")
    (tmp_path / "d/sub/b.csv").write_text("2")
    original = fingerprint(tmp_path / "d", cache)
    assert (original.kind, original.files, original.bytes) == ("dir", 2, 2)
    assert fingerprint(tmp_path / "d", cache) == original

    (tmp_path / "d/sub/b.csv").rename(tmp_path / "d/sub/c.csv")
    renamed = fingerprint(tmp_path / "d", cache)
    (tmp_path / "d/sub/c.csv").write_text("3")
    changed = fingerprint(tmp_path / "d", cache)
    assert len({original.digest, renamed.digest, changed.digest}) == 3
    assert fingerprint(tmp_path / "nowhere", cache).kind == "missing"


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Paths whose content gets hashed (cache misses)."""
    calls: list[Path] = []
    real_sha256 = fingerprints.file_sha256

    def counting_sha256(path: Path) -> str:
        calls.append(path)
        return real_sha256(path)

    monkeypatch.setattr(fingerprints, "file_sha256", counting_sha256)
    return calls


def test_hash_cache_skips_rehashing_unchanged_files(
    tmp_path: Path, hash_calls: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fingerprints, "RACY_WINDOW_S", -1.0)  # trust even brand-new files
    big = tmp_path / "raw/application_train.csv"
    big.parent.mkdir()
    big.write_text("SK_ID_CURR\n1\n")
    cache = HashCache(tmp_path / "cache.json")
    first = fingerprint(tmp_path / "raw", cache)
    cache.save()

    reloaded = HashCache(tmp_path / "cache.json")  # as in the next run
    assert fingerprint(tmp_path / "raw", reloaded) == first
    assert hash_calls == [big]

    # Same size, and the old mtime put back (as cp -p or tar do): the ctime still tells.
    stat = big.stat()
    big.write_text("SK_ID_CURR\n2\n")
    os.utime(big, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint(tmp_path / "raw", reloaded) != first
    assert hash_calls == [big, big]


def test_recently_changed_files_are_not_cached(tmp_path: Path, hash_calls: list[Path]) -> None:
    recent = tmp_path / "recent.csv"
    recent.write_text("x\n")
    cache = HashCache(tmp_path / "cache.json")
    fingerprint(recent, cache)
    fingerprint(recent, cache)
    assert hash_calls == [recent, recent]


def test_remote_inputs_use_the_sources_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = HashCache(Path("/nonexistent/cache.json"))
    with_hook = types.ModuleType("creditrisk.data.sources")
    with_hook.fingerprint = lambda uri: f"etag-digest-of-{uri}"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "creditrisk.data.sources", with_hook)
    remote = fingerprint("s3://bucket/prefix", cache)
    assert remote == Fingerprint(kind="remote", digest="etag-digest-of-s3://bucket/prefix")
    assert remote.same_as(fingerprint("s3://bucket/prefix", cache))

    monkeypatch.setitem(sys.modules, "creditrisk.data.sources", types.ModuleType("sources"))
    unknown = fingerprint("s3://bucket/prefix", cache)
    assert unknown.kind == "unknown"
    assert not unknown.same_as(unknown)  # without a hook the input always counts as changed


def test_notebook_hash_ignores_outputs_but_not_code_or_tags(tmp_path: Path) -> None:
    path = tmp_path / "n.ipynb"
    write_notebook(path, ["x = 1", "y: int = 2"])
    original = notebook_sha256(path)

    notebook = nbformat.read(path, as_version=4)
    notebook.cells[1].execution_count = 5
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text="hello")]
    notebook.metadata["widgets"] = {}
    nbformat.write(notebook, path)
    assert notebook_sha256(path) == original

    notebook.cells[2].metadata["tags"] = []
    nbformat.write(notebook, path)
    assert notebook_sha256(path) != original


def test_latest_falls_back_to_a_text_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_symlinks(*args: object, **kwargs: object) -> None:
        raise OSError("symlinks are not available")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    point_latest(tmp_path, "20261122T061500Z-3f9a1c")
    assert (tmp_path / "LATEST").read_text() == "20261122T061500Z-3f9a1c\n"
    assert latest_run_id(tmp_path) == "20261122T061500Z-3f9a1c"
    assert latest_run_id(tmp_path / "empty") is None


# --- recording results -----------------------------------------------------------------------


class Grade(enum.Enum):
    A = "A"


@dataclasses.dataclass
class Threshold:
    probability_of_default: float
    path: Path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.int64(3), 3),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (np.array([1, 2]), [1, 2]),
        (float("nan"), None),
        (np.float64("inf"), None),
        (pd.NA, None),
        (pd.Timestamp("2026-01-02"), "2026-01-02T00:00:00"),
        (dt.date(2026, 1, 2), "2026-01-02"),
        (Path("reports/metrics.json"), "reports/metrics.json"),
        (Grade.A, "A"),
        (Threshold(0.08, Path("a")), {"probability_of_default": 0.08, "path": "a"}),
        ({1: (np.int32(1), "x")}, {"1": [1, "x"]}),
        (pd.Series([1, 2], index=["a", "b"]), {"a": 1, "b": 2}),
        (pd.DataFrame({"band": ["A"], "pd": [0.1]}), [{"band": "A", "pd": 0.1}]),
    ],
)
def test_to_json_value(value: object, expected: object) -> None:
    converted = to_json_value(value)
    assert converted == expected
    assert json.loads(json.dumps(converted, allow_nan=False)) == expected


def test_record_outside_a_kernel_converts_and_validates() -> None:
    assert record(auc=np.float64(0.75), rows=np.int64(10)) == {"auc": 0.75, "rows": 10}
    with pytest.raises(TypeError, match="cannot record a value of type object"):
        record(model=object())
    with pytest.raises(ValueError, match="record key numbers"):
        record(scores=list(range(300_000)))


def test_read_results_of_a_notebook_without_results(tmp_path: Path) -> None:
    path = tmp_path / "n.ipynb"
    write_notebook(path, ["x = 1"])
    assert read_results(path) == {}
