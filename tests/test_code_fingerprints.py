"""Code fingerprints: a stage is skipped only if every module, data file and package it runs is
unchanged (finding 1 of the audit-trail issue: pipeline.yaml listed code inputs by hand and
missed the functions the stages call, so editing ``run_train`` still skipped train).

A toy project with a first-party package ``toylib`` beside its pipeline.yaml, a real kernel and
papermill: ``make`` imports ``toylib.scale`` (which imports ``toylib.detail`` only inside a
function, and reads ``toylib/sql/factor.sql``) and a third-party package ``fakemod`` installed
as a real distribution in a temporary site folder; ``total`` imports ``toylib.labels``.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from test_runner import Setup, write_notebook

from creditrisk.pipeline.code import code_fingerprint, import_closure
from creditrisk.provenance import file_sha256
from creditrisk.settings import PROJECT_ROOT

pytestmark = pytest.mark.xdist_group("code-fingerprints")

PIPELINE_YAML = """\
kernel: creditrisk
stages:
  - name: make
    notebook: notebooks/01_make.ipynb
    parameters: {}
    inputs: [inputs/numbers.txt]
    outputs: [data/made.json]
  - name: total
    notebook: notebooks/02_total.ipynb
    parameters: {label: sum}
    inputs: [data/made.json]
    outputs: [reports/total.json]
"""

MAKE_CELLS = [
    "import json\nfrom pathlib import Path\n\nimport fakemod\nfrom toylib.scale import scaled",
    "unused: int = 0  # the parameters cell",
    "numbers = [int(word) for word in Path('inputs/numbers.txt').read_text().split()]\n"
    "Path('data').mkdir(exist_ok=True)\n"
    "Path('data/made.json').write_text(json.dumps([scaled(n) for n in numbers]))",
]

TOTAL_CELLS = [
    "import json\nfrom pathlib import Path\n\nfrom toylib.labels import PREFIX",
    "label: str = 'sum'  # key of the total in the report",
    "made = json.loads(Path('data/made.json').read_text())\n"
    "Path('reports').mkdir(exist_ok=True)\n"
    "Path('reports/total.json').write_text(json.dumps({PREFIX + label: sum(made)}))",
]

TOYLIB = {
    "__init__.py": '"""A first-party package of the toy project."""\n',
    "scale.py": (
        "from pathlib import Path\n\n\n"
        "def scaled(number: int) -> int:\n"
        "    from toylib.detail import factor  # lazy: still code the stage runs\n\n"
        "    extra = int((Path(__file__).parent / 'sql' / 'factor.sql').read_text().split()[-1])\n"
        "    return number * factor() + extra\n"
    ),
    "detail.py": "def factor() -> int:\n    return 2\n",
    "labels.py": "PREFIX = ''\n",
    "sql/factor.sql": "select 0\n",
}


def write_distribution(site: Path, version: str) -> None:
    """A real installed distribution ``fakedist`` providing the module ``fakemod``."""
    for old in site.glob("fakedist-*.dist-info"):
        shutil.rmtree(old)
    (site / "fakemod").mkdir(parents=True, exist_ok=True)
    (site / "fakemod" / "__init__.py").write_text(f"VERSION = {version!r}\n")
    info = site / f"fakedist-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakedist\nVersion: {version}\n")
    (info / "top_level.txt").write_text("fakemod\n")
    (info / "RECORD").write_text("fakemod/__init__.py,,\n")
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def toy(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy project, its site folder and a workspace after one successful run."""
    root = tmp_path_factory.mktemp("code")
    project, site = root / "project", root / "site"
    for name, text in TOYLIB.items():
        (project / "toylib" / name).parent.mkdir(parents=True, exist_ok=True)
        (project / "toylib" / name).write_text(text)
    write_notebook(project / "notebooks/01_make.ipynb", MAKE_CELLS)
    write_notebook(project / "notebooks/02_total.ipynb", TOTAL_CELLS)
    (project / "pipeline.yaml").write_text(PIPELINE_YAML)
    write_distribution(site, "1.0")
    (root / "workspace/inputs").mkdir(parents=True)
    (root / "workspace/inputs/numbers.txt").write_text("1 2 3\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", f"{project}:{site}")
        patch.syspath_prepend(str(site))
        Setup(project=project, workspace=root / "workspace").run()
    return root


@pytest.fixture
def setup(toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    """A private copy of the toy project, site folder and workspace after the first run."""
    for name in ("project", "site", "workspace"):
        shutil.copytree(toy / name, tmp_path / name, symlinks=True)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'project'}:{tmp_path / 'site'}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    return Setup(project=tmp_path / "project", workspace=tmp_path / "workspace")


def statuses(setup: Setup) -> dict[str, str]:
    return setup.statuses(setup.run())


def test_nothing_changed_skips_every_stage(setup: Setup) -> None:
    assert statuses(setup) == {"make": "skipped", "total": "skipped"}


def test_a_lazily_imported_module_reruns_its_stage_and_the_changed_output_the_next(
    setup: Setup,
) -> None:
    (setup.project / "toylib/detail.py").write_text("def factor() -> int:\n    return 3\n")

    assert statuses(setup) == {"make": "succeeded", "total": "succeeded"}
    assert json.loads((setup.workspace / "reports/total.json").read_text()) == {"sum": 18}


def test_a_code_change_that_keeps_the_output_reruns_only_its_stage(setup: Setup) -> None:
    detail = setup.project / "toylib/detail.py"
    detail.write_text("# the same factor, reworded\n" + detail.read_text())

    assert statuses(setup) == {"make": "succeeded", "total": "skipped"}


def test_a_module_only_the_later_stage_imports_reruns_only_it(setup: Setup) -> None:
    (setup.project / "toylib/labels.py").write_text("PREFIX = 'total_'\n")

    assert statuses(setup) == {"make": "skipped", "total": "succeeded"}
    assert json.loads((setup.workspace / "reports/total.json").read_text()) == {"total_sum": 12}


def test_a_data_file_of_the_package_counts_as_code(setup: Setup) -> None:
    (setup.project / "toylib/sql/factor.sql").write_text("select 1\n")

    assert statuses(setup) == {"make": "succeeded", "total": "succeeded"}


def test_a_new_package_version_reruns_the_stages_that_import_it(setup: Setup) -> None:
    write_distribution(setup.project.parent / "site", "1.1")

    run = setup.run()

    assert setup.statuses(run) == {"make": "succeeded", "total": "skipped"}
    make, total = run.stage("make").code, run.stage("total").code
    assert make is not None and total is not None
    assert make.distributions["fakedist"] == "1.1"
    assert "fakedist" not in total.distributions


def test_run_json_lists_every_file_the_skip_relied_on(setup: Setup) -> None:
    run = setup.run()

    make = run.stage("make").code
    assert make is not None
    for name in (
        "toylib/__init__.py",
        "toylib/scale.py",
        "toylib/detail.py",
        "toylib/sql/factor.sql",
    ):
        assert make.files[name] == file_sha256(setup.project / name), name
    assert "toylib/labels.py" not in make.files
    assert "creditrisk/stages/results.py" not in make.files  # make does not record results
    assert make.distributions["fakedist"] == "1.0"
    assert make.python == sys.version.split()[0]
    written = json.loads((setup.runs / run.run_id / "run.json").read_text())
    assert (
        written["stages"][0]["code"]["files"]["toylib/detail.py"] == make.files["toylib/detail.py"]
    )


# ---------------------------------------------------------------------------------------------
# The real stages: their closures hold what pipeline.yaml used to miss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notebook", "expected"),
    [
        (
            "01_ingest",
            [
                "creditrisk/stages/ingest.py",
                "creditrisk/data/ingest.py",
                "creditrisk/data/contracts.py",
                "creditrisk/data/sources.py",
                "creditrisk/data/synthetic/__init__.py",
                "creditrisk/data/reference/profile.csv",
            ],
        ),
        (
            "02_features",
            [
                "creditrisk/stages/features.py",
                "creditrisk/features/engine.py",
                "creditrisk/features/catalog.py",
                "creditrisk/features/sql/bureau.sql",
                "creditrisk/features/sql/feature_store.sql",
            ],
        ),
        (
            "03_train",
            [
                "creditrisk/stages/train.py",
                "creditrisk/modeling/train.py",
                "creditrisk/modeling/model.py",
                "creditrisk/modeling/pd_model.py",
                "creditrisk/modeling/split.py",
                "creditrisk/tracking.py",
            ],
        ),
        (
            "04_evaluate",
            [
                "creditrisk/stages/evaluate.py",
                "creditrisk/stages/train.py",
                "creditrisk/modeling/train.py",
                "creditrisk/modeling/evaluate.py",
                "creditrisk/modeling/explain.py",
                "creditrisk/modeling/plots.py",
            ],
        ),
        (
            "05_validate",
            [
                "creditrisk/stages/validate.py",
                "creditrisk/governance/gates.py",
                "creditrisk/registry.py",
            ],
        ),
        (
            "06_register",
            [
                "creditrisk/stages/register.py",
                "creditrisk/governance/manifest.py",
                "creditrisk/governance/model_card.py",
                "creditrisk/governance/lineage.py",
                "creditrisk/registry.py",
            ],
        ),
        (
            "07_monitor",
            [
                "creditrisk/stages/monitor.py",
                "creditrisk/scoring/batch.py",
                "creditrisk/scoring/scorer.py",
                "creditrisk/monitoring/drift.py",
                "creditrisk/monitoring/cloudwatch.py",
                "creditrisk/features/sql/bureau.sql",
            ],
        ),
    ],
)
def test_each_stage_fingerprints_the_code_it_calls(notebook: str, expected: list[str]) -> None:
    fingerprint = code_fingerprint(PROJECT_ROOT / "notebooks" / f"{notebook}.ipynb", PROJECT_ROOT)
    missing = [path for path in expected if path not in fingerprint.files]
    assert not missing, f"{notebook} does not fingerprint {missing}"
    assert not [path for path in fingerprint.files if path.startswith("serving/")]


def test_the_monitor_stage_fingerprints_the_packages_it_uses() -> None:
    fingerprint = code_fingerprint(PROJECT_ROOT / "notebooks/07_monitor.ipynb", PROJECT_ROOT)
    for distribution in ("duckdb", "xgboost", "scikit-learn", "evidently", "mlflow", "numpy"):
        assert fingerprint.distributions.get(distribution), distribution


def test_imports_inside_functions_belong_to_the_closure() -> None:
    closure = import_closure(PROJECT_ROOT / "notebooks/03_train.ipynb", PROJECT_ROOT)
    # stages/train.py imports pd_model only inside log(): it is still code the stage runs.
    assert "creditrisk.modeling.pd_model" in closure.modules
