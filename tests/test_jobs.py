"""The resumable batch-job runner, with a small numpy model (see jobs_fixtures.py).

End-to-end runs with the ESM-2 checkpoint are in test_cli.py; these tests pin
the runner's own contract: resume, error isolation, manifest keys, atomic output.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.io import InputFile, read_embeddings
from bionemo_lite.jobs import (
    EmbedTask,
    MutationScoreTask,
    MutationSource,
    ScoreTask,
    run_job,
    structure_filename,
)
from bionemo_lite.records import Record
from jobs_fixtures import CompositionModel, PickyModel, expected_vectors

SEQS = {f"s{i}": "ACDEFGHIKLMNPQRSTVWY"[: 3 + (7 * i) % 17] for i in range(10)}


def _fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records.items()))
    return path


def _errors(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as fh:
        return [(row["id"], row["reason"]) for row in csv.DictReader(fh)]


def test_embed_job_writes_every_record_in_input_order(tmp_path):
    model = CompositionModel()
    out = tmp_path / "emb.parquet"
    summary = run_job(InputFile(_fasta(tmp_path / "in.fasta", SEQS)), EmbedTask(model), out,
                      chunk_size=4, progress=False)
    assert (summary.n_ok, summary.n_failed, summary.n_skipped_resumed, summary.n_computed) == (10, 0, 0, 10)
    assert model.records_computed == 10 and model.calls == 3  # chunks of 4, 4, 2
    back = read_embeddings(out)
    assert back.ids == list(SEQS) and back.layers == (2,) and back.pooling == "mean"
    for rid, seq in SEQS.items():
        np.testing.assert_array_equal(back.arrays[rid], expected_vectors(seq, 2).mean(0))
    assert summary.manifest is None and not Path(f"{out}.job.sqlite").exists()  # all done: removed
    assert not summary.errors_path.exists()  # no failures, no (empty) errors file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.parquet", "in.fasta"]


def test_bad_records_go_to_the_errors_file_and_the_job_goes_on(tmp_path):
    records = {"ok1": "MKV", "bad": "MKJV", "long": "A" * 41, "ok2": "mk tl", "gap": "MK-V"}
    path = _fasta(tmp_path / "in.fasta", records)
    path.write_text(path.read_text() + ">ok1\nMKW\n>\nMKV\n")  # a duplicate id and a missing one
    model = CompositionModel()
    summary = run_job(InputFile(path), EmbedTask(model, pooling="per_residue"), tmp_path / "o.h5", progress=False)
    assert (summary.n_ok, summary.n_failed) == (2, 5)
    assert model.records_computed == 2  # bad records never reached the model
    reasons = dict(_errors(summary.errors_path))
    assert list(reasons) == ["bad", "long", "gap", "ok1", ""]
    assert reasons["bad"].startswith("position 3: invalid residue 'J'")
    assert "41 residues, more than the model's maximum of 40" in reasons["long"]
    assert "gaps are not allowed" in reasons["gap"]
    assert "duplicate id" in reasons["ok1"] and "no id" in reasons[""]
    back = read_embeddings(tmp_path / "o.h5")
    np.testing.assert_array_equal(back.arrays["ok2"], expected_vectors("MKTL", 2))
    assert summary.manifest is not None  # kept: a re-run retries only what failed


def test_truncate_policy(tmp_path):
    model = CompositionModel()
    src = InputFile(_fasta(tmp_path / "in.fasta", {"long": "A" * 45, "short": "MKV"}))
    summary = run_job(src, EmbedTask(model, on_too_long="truncate", pooling="per_residue"), tmp_path / "o.parquet",
                      progress=False)
    assert summary.n_ok == 2
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert [(r["id"], r["length"], r["truncated"], len(r["sequence"])) for r in table] == [
        ("long", 40, True, 45), ("short", 3, False, 3)]


def test_killed_job_resumes_without_recomputing(tmp_path):
    src = InputFile(_fasta(tmp_path / "in.fasta", SEQS))
    out = tmp_path / "emb.npz"
    first = CompositionModel()

    def stop_after_first_chunk(report):
        assert report.index == 0 and report.n_ok == 3
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(src, EmbedTask(first, layers=(0, -1)), out, chunk_size=3, progress=False,
                on_chunk_done=stop_after_first_chunk)
    assert first.records_computed == 3
    assert not out.exists()  # no output that looks complete
    with sqlite3.connect(f"{out}.job.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 3

    second = CompositionModel()
    summary = run_job(src, EmbedTask(second, layers=(0, -1)), out, chunk_size=3, progress=False)
    assert second.records_computed == 7  # only the records the first run did not finish
    assert (summary.n_ok, summary.n_skipped_resumed, summary.n_computed) == (10, 3, 7)
    with np.load(out) as npz:
        assert npz.files == list(SEQS)  # every record exactly once, in input order
        for rid, seq in SEQS.items():
            rows = expected_vectors(seq, 0).mean(0), expected_vectors(seq, 2).mean(0)
            np.testing.assert_array_equal(npz[rid], np.stack(rows))


def test_manifest_key_follows_sequences_and_parameters(tmp_path):
    fasta = tmp_path / "in.fasta"
    out = tmp_path / "emb.parquet"
    _fasta(fasta, SEQS)
    model = CompositionModel()
    run_job(InputFile(fasta), EmbedTask(model), out, progress=False, keep_manifest=True)
    assert model.records_computed == 10
    # Same job again: nothing to compute, output rewritten from the manifest.
    again = run_job(InputFile(fasta), EmbedTask(model), out, progress=False, keep_manifest=True)
    assert model.records_computed == 10 and again.n_skipped_resumed == 10 and again.n_ok == 10
    # One sequence edited, one record added: only those two are computed.
    _fasta(fasta, {**SEQS, "s3": "MKV", "new": "WWW"})
    edited = run_job(InputFile(fasta), EmbedTask(model), out, progress=False, keep_manifest=True)
    assert model.records_computed == 12 and edited.n_computed == 2 and edited.n_ok == 11
    np.testing.assert_array_equal(read_embeddings(out).arrays["s3"], expected_vectors("MKV", 2).mean(0))
    # Other parameters: everything again (and the old rows are dropped).
    run_job(InputFile(fasta), EmbedTask(model, pooling="bos"), out, progress=False, keep_manifest=True)
    assert model.records_computed == 23
    run_job(InputFile(fasta), EmbedTask(model, pooling="bos"), out, params={"weights": "other.pt"},
            progress=False)
    assert model.records_computed == 34
    assert not Path(f"{out}.job.sqlite").exists()


@pytest.mark.parametrize("by", ["id", "index", "other"])
def test_model_rejections_are_isolated_to_their_record(tmp_path, by):
    """A rejection the core cannot foresee (named by id, by position, or by neither) fails that record only."""
    records = {"a": "MKV", "b": "MKWWV", "c": "MKL", "d": "WWA", "e": "MKA"}
    model = PickyModel("WW", by=by)
    summary = run_job(InputFile(_fasta(tmp_path / "in.fasta", records)), EmbedTask(model), tmp_path / "o.npz",
                      chunk_size=5, progress=False)
    assert (summary.n_ok, summary.n_failed) == (3, 2)
    assert _errors(summary.errors_path) == [("b", "motif WW not allowed"), ("d", "motif WW not allowed")]
    assert read_embeddings(tmp_path / "o.npz").ids == ["a", "c", "e"]


def test_a_problem_with_the_job_itself_stops_it_before_any_output(tmp_path):
    out = tmp_path / "o.parquet"
    with pytest.raises(InvalidInputError, match="layer 7 does not exist"):
        run_job(InputFile(_fasta(tmp_path / "in.fasta", SEQS)), EmbedTask(CompositionModel(), layers=(7,)), out,
                progress=False)
    assert not out.exists()


def test_out_of_memory_records_fail_alone_and_are_retried_on_rerun(tmp_path):
    fasta = _fasta(tmp_path / "in.fasta", {"a": "MKV", "huge": "MKVYYY", "b": "MKL"})
    out = tmp_path / "o.parquet"
    summary = run_job(InputFile(fasta), EmbedTask(CompositionModel(oom_residue="Y")), out, progress=False)
    assert (summary.n_ok, summary.n_failed) == (2, 1)
    [(rid, reason)] = _errors(summary.errors_path)
    assert rid == "huge" and "out of memory" in reason
    bigger = CompositionModel()
    again = run_job(InputFile(fasta), EmbedTask(bigger), out, progress=False)
    assert bigger.records_computed == 1 and (again.n_ok, again.n_failed) == (3, 0)
    assert not again.errors_path.exists()  # the earlier run's errors file went once its records succeeded


def test_every_record_failing(tmp_path):
    summary = run_job(InputFile(_fasta(tmp_path / "in.fasta", {"a": "J", "b": "123"})), EmbedTask(CompositionModel()),
                      tmp_path / "o.h5", progress=False)
    assert summary.all_failed and summary.n_failed == 2 and read_embeddings(tmp_path / "o.h5").ids == []


def test_score_job(tmp_path):
    model = CompositionModel()
    summary = run_job(InputFile(_fasta(tmp_path / "in.fasta", {"a": "MKV", "b": "mkj", "c": "AC"})),
                      ScoreTask(model, "pll"), tmp_path / "s.csv", progress=False)
    assert (summary.n_ok, summary.n_failed) == (2, 1)
    with open(tmp_path / "s.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["id"], r["sequence"], float(r["score"])) for r in rows] == [
        ("a", "MKV", float(model.score(["MKV"]).scores[0])), ("c", "AC", float(model.score(["AC"]).scores[0]))]


def _mutation_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_mutation_job(tmp_path):
    wild_type = Record("wt", "mkvla")
    mutations = ["K2R", "a5g", "k2r", "M1W:V3L", "X9Y", "Q2R", "2R"]
    model = CompositionModel()
    task = MutationScoreTask(model, wild_type, "masked_marginals")
    summary = run_job(MutationSource(task.wild_type, mutations), task, tmp_path / "m.parquet", chunk_size=2,
                      progress=False)
    rows = _mutation_rows(tmp_path / "m.parquet")
    # `sequence` is the mutant scored, `wild_type` the sequence it was made from.
    assert [(r["id"], r["mutation"], r["sequence"], r["wild_type"], r["truncated"]) for r in rows] == [
        ("wt", "K2R", "MRVLA", "MKVLA", False), ("wt", "A5G", "MKVLG", "MKVLA", False)]
    reasons = dict(_errors(summary.errors_path))
    assert list(reasons) == ["K2R", "M1W:V3L", "X9Y", "Q2R", "2R"]
    assert reasons["K2R"] == "duplicate mutation (same as 'K2R', listed before); skipped"  # 'k2r': same mutation
    assert reasons["M1W:V3L"] == "multi-site mutations are not supported"  # valid notation, the model refused
    assert "position 9 is outside" in reasons["X9Y"]
    assert model.records_computed == 2


@pytest.mark.parametrize("mutation", ["Q2R", "2R", "M1J", "M1A:M1G", "X9Y"])
def test_mutation_job_reports_the_core_parser_message(tmp_path, mutation):
    from bionemo_lite.jobs import failure_reason
    from bionemo_lite.mutations import parse_mutation

    task = MutationScoreTask(CompositionModel(), Record("wt", "MKVLA"), "masked_marginals")
    summary = run_job(MutationSource(task.wild_type, [mutation]), task, tmp_path / "m.csv", progress=False)
    with pytest.raises(InvalidInputError) as err:  # what the Python API (and HTTP) say about it
        parse_mutation(mutation, "MKVLA")
    assert _errors(summary.errors_path) == [(mutation, failure_reason(err.value))]


def test_mutation_job_scores_the_truncated_wild_type(tmp_path):
    model = CompositionModel()  # max_length 40
    wild_type = Record("wt", "MKVLA" * 9)  # 45 residues
    with pytest.raises(InvalidInputError, match="45 residues"):
        MutationScoreTask(model, wild_type, "masked_marginals")
    task = MutationScoreTask(model, wild_type, "masked_marginals", on_too_long="truncate")
    assert task.wild_type.sequence == "MKVLA" * 8 and task.wild_type_truncated
    summary = run_job(MutationSource(task.wild_type, ["K2R", "A40G", "M41A", "K42W"]), task,
                      tmp_path / "m.parquet", progress=False)
    rows = _mutation_rows(tmp_path / "m.parquet")
    expected = model.score([("wt", "MKVLA" * 8)], method="masked_marginals", mutations=["K2R", "A40G"])
    mutants = ["MRVLA" + "MKVLA" * 7, "MKVLA" * 7 + "MKVLG"]
    assert [(r["mutation"], r["sequence"], r["wild_type"], r["truncated"], r["score"]) for r in rows] == [
        (m, mt, "MKVLA" * 8, True, v) for m, mt, v in zip(["K2R", "A40G"], mutants, expected.scores.tolist())]
    reasons = dict(_errors(summary.errors_path))
    assert list(reasons) == ["M41A", "K42W"]
    assert reasons["M41A"] == (
        "position 41: position 41 is past the first 40 residues, where the wild type was truncated to the "
        "model's maximum length; mutations there cannot be scored")


def test_structure_file_names_are_safe_and_unique():
    assert structure_filename("P12345|chainA", "pdb") == "P12345|chainA.pdb"
    a, b = structure_filename("a/b", "cif"), structure_filename("a_b", "cif")
    assert a != b and "/" not in a and a.endswith(".cif")
    assert not structure_filename("..", "pdb").startswith(".")


def test_progress_moves_record_by_record_within_a_chunk(tmp_path):
    # 10 records in one chunk; the model's token budget (64) splits them into several batches.
    updates: list[int] = []
    summary = run_job(InputFile(_fasta(tmp_path / "in.fasta", {**SEQS, "bad": "MKJ"})), EmbedTask(CompositionModel()),
                      tmp_path / "o.h5", chunk_size=512, progress=False, on_records_done=updates.append)
    assert summary.n_ok == 10 and summary.n_failed == 1
    assert sum(updates) == 11  # every record once, the failed one too
    assert len(updates) >= 4 and max(updates) < 10  # not one jump for the whole chunk


def test_a_record_retried_alone_is_not_counted_twice(tmp_path):
    updates: list[int] = []
    run_job(InputFile(_fasta(tmp_path / "in.fasta", {"a": "MKV", "huge": "MKVYYY", "b": "MKL"})),
            EmbedTask(CompositionModel(oom_residue="Y")), tmp_path / "o.parquet", progress=False,
            on_records_done=updates.append)
    assert sum(updates) == 3


def test_the_progress_bar_shows_records_per_second_and_time_left(tmp_path):
    import io

    from bionemo_lite.jobs.runner import _NoBar, _progress_bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = _progress_bar(InputFile(_fasta(tmp_path / "in.fasta", SEQS)), True, screen)
    bar.update(4)
    bar.refresh()
    bar.close()
    text = screen.getvalue()
    assert "4/10" in text and "rec/s" in text and "<" in text  # elapsed<remaining
    source = InputFile(tmp_path / "in.fasta")
    assert isinstance(_progress_bar(source, False, screen), _NoBar)  # -q
    assert isinstance(_progress_bar(source, True, io.StringIO()), _NoBar)  # not a terminal


def test_extra_input_columns_pass_through_to_every_output(tmp_path):
    import pyarrow.parquet as pq

    from bionemo_lite.io import read_embeddings as read

    path = tmp_path / "in.csv"
    path.write_text("num,id,sequence,label,score,\n1,a,MKV,0.5,high,x\n2,b,MKJ,1,low,y\n3,c,AC,,mid,z\n")
    src = InputFile(path)
    run_job(src, EmbedTask(CompositionModel()), tmp_path / "e.parquet", progress=False)
    table = pq.read_table(tmp_path / "e.parquet")
    # The result's columns first, as for a FASTA; then the input's others, as text, in header order.
    assert table.column_names == ["id", "sequence", "length", "truncated", "embedding", "num", "label", "score",
                                  "column_6"]
    assert table.select(["id", "num", "label", "score", "column_6"]).to_pylist() == [
        {"id": "a", "num": "1", "label": "0.5", "score": "high", "column_6": "x"},
        {"id": "c", "num": "3", "label": "", "score": "mid", "column_6": "z"}]
    np.testing.assert_array_equal(read(tmp_path / "e.parquet").arrays["c"], expected_vectors("AC", 2).mean(0))

    run_job(src, ScoreTask(CompositionModel(), "pll"), tmp_path / "s.csv", progress=False)
    with open(tmp_path / "s.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # An input column named like a result column keeps both: the input's as input_<name>.
    assert list(rows[0]) == ["id", "sequence", "score", "truncated", "num", "label", "input_score", "column_6"]
    assert [(r["id"], r["input_score"], r["label"]) for r in rows] == [("a", "high", "0.5"), ("c", "mid", "")]
    assert float(rows[0]["score"]) == float(CompositionModel().score(["MKV"]).scores[0])

    run_job(src, EmbedTask(CompositionModel(), pooling="per_residue"), tmp_path / "e.h5", progress=False)
    import h5py

    with h5py.File(tmp_path / "e.h5") as fh:
        assert fh["a"].attrs["label"] == "0.5" and fh["a"].attrs["num"] == "1"


def test_a_mutation_table_s_other_columns_pass_through(tmp_path):
    from bionemo_lite.io import read_mutation_rows

    muts = tmp_path / "dms.csv"
    muts.write_text("mutant,DMS_score\nK2R,0.7\nA5G,-1.5\nQ2R,0\n")
    rows = read_mutation_rows(muts)
    assert rows == [("K2R", (("DMS_score", "0.7"),)), ("A5G", (("DMS_score", "-1.5"),)), ("Q2R", (("DMS_score", "0"),))]
    task = MutationScoreTask(CompositionModel(), Record("wt", "MKVLA"), "masked_marginals")
    run_job(MutationSource(task.wild_type, [m for m, _ in rows], [f for _, f in rows]), task, tmp_path / "m.parquet",
            progress=False)
    assert [(r["mutation"], r["DMS_score"]) for r in _mutation_rows(tmp_path / "m.parquet")] == [
        ("K2R", "0.7"), ("A5G", "-1.5")]
