"""Every notebook in notebooks/ runs top to bottom on tiny checkpoints and draws its figures.

Each notebook reads its weights (and data) from environment variables, which the kernel
inherits from this process; here they point at tiny checkpoints in the official formats
(random ESM-2, ESM-1v, ESMFold; the MegaMolBART the session trains on drugs) and at a small
measured-effects table made below. The executed copies are written to tests/artifacts/notebooks/.
"""

from __future__ import annotations

import csv
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from playground_fixtures import ARTIFACTS

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
WILD_TYPE = "MTYKLILNGKTLKGETTTEA"  # deep_mutational_scan: the first 20 residues of its GB1 (a shorter scan)
# A line each notebook prints when it ran its last analysis (beyond "no error": the figures' numbers).
PRINTS = {
    "esm2_quickstart.ipynb": "record 'broken', position 4",
    "deep_mutational_scan.ipynb": "ESM-1v vs measured",
    "structure.ipynb": "kJ/mol, RMSD",
    "small_molecules.ipynb": "mean QED sampled",
    "http_and_triton.ipynb": "'Triton'",
}
IMAGES = {"image/png", "image/svg+xml", "image/jpeg"}


def write_dms_table(path: Path, wild_type: str) -> Path:
    """A "measured" effect per substitution: BLOSUM62 of the change plus a position term (a table in
    the layout DMS studies publish: mutation, score)."""
    from Bio.Align import substitution_matrices

    blosum = substitution_matrices.load("BLOSUM62")
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["mutation", "score"])
        for i, w in enumerate(wild_type):
            for a in "ACDEFGHIKLMNPQRSTVWY":
                if a != w:
                    out.writerow([f"{w}{i + 1}{a}", float(blosum[w][a]) - 0.05 * (i % 7)])
    return path


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory, esm2_fair_checkpoint, trained):
    from bionemo_lite.zoo.esm1.testing import tiny_checkpoint as tiny_esm1
    from bionemo_lite.zoo.esmfold.testing import tiny_checkpoint as tiny_esmfold

    folder = tmp_path_factory.mktemp("notebooks")
    return {
        "ESM2_WEIGHTS": str(esm2_fair_checkpoint),
        "ESM1V_WEIGHTS": str(tiny_esm1(folder / "esm1v", "esm1v_ensemble")),
        "DMS_TABLE": str(write_dms_table(folder / "dms.csv", WILD_TYPE)),
        "WILD_TYPE": WILD_TYPE,
        "FOLD_SEQUENCE": "MKTAYIAKQRQI",  # structure: a short chain keeps the relaxation of a random fold brief
        "ESMFOLD_WEIGHTS": str(tiny_esmfold(folder / "esmfold")),
        "MEGAMOLBART_WEIGHTS": str(trained[0].save_nemo(folder / "megamolbart.nemo")),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",  # the tiny checkpoints are not the published shapes: each load warns
    }


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def execute(path: Path, folder: Path):
    nb = nbformat.read(path, as_version=4)
    # Runs in a scratch folder: files a notebook writes (relaxed.pdb) stay out of the checkout.
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    (ARTIFACTS / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, ARTIFACTS / "notebooks" / path.name)
    return nb


@pytest.fixture(scope="module")
def executed(notebook_env, tmp_path_factory) -> dict[str, Future]:
    """Every notebook, run at once in its own kernel (one thread each): most of a notebook's time is its
    kernel's start-up and servers' start-ups, which overlap; each kernel computes on one thread."""
    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(max_workers=len(NOTEBOOKS)) as pool:
        for key, value in notebook_env.items():
            mp.setenv(key, value)  # each kernel inherits this process's environment when it starts
        runs = {p.name: pool.submit(execute, p, tmp_path_factory.mktemp(p.stem)) for p in NOTEBOOKS}
        wait(runs.values())
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, executed):
    nb = executed[path.name].result()  # re-raises the notebook's CellExecutionError, naming the cell
    errors = [o for o in outputs(nb) if o.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue") if errors else None
    images = [o for o in outputs(nb) if IMAGES & set(o.get("data", {}))]
    assert images, f"{path.name} drew no figure"
    printed = "".join(o.get("text", "") for o in outputs(nb))
    assert PRINTS.get(path.name, "") in printed


def test_committed_notebooks_carry_their_figures():
    """The notebooks in the repository are stored executed, figures included, for readers on GitHub."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert any(IMAGES & set(o.get("data", {})) for o in outputs(nb)), f"{path.name} is stored without figures"
        first = nb.cells[0]
        assert first.cell_type == "markdown" and "Weights" in first.source, f"{path.name}: say which weights it needs"
