"""The ``window`` length policy: long proteins read through overlapping windows (`bionemo_lite.windows`).

Every windowed result is checked against a reference built here by hand: the windows' spans and
each residue's window (the one it is most central in) are worked out in this file, each window is
run through the plain (unwindowed) model, and the rule is applied to those outputs. A tiny ESM-2
with a 30-residue limit makes a 75-residue protein need four windows; a 2,500-residue protein goes
through Python, the CLI and HTTP with the real window of 1022 residues on the tiny architecture.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from bionemo_lite.cli import app
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.records import apply_length_policy, as_records, window_stride
from bionemo_lite.verbs import EmbedOptions, ScoreOptions, length_policy, options_from_keywords
from bionemo_lite.windows import WindowPlan
from esm2_fixtures import ESM2_NAME, fair_log_probs, fair_tokens
from server_fixtures import serve_cli

pytestmark = pytest.mark.filterwarnings("ignore:.*is not the published esm2_t6_8M_UR50D")
TOL = 1e-5
AMINO = "ACDEFGHIKLMNPQRSTVWY"


def protein(length: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(AMINO), size=length))


LONG = protein(75, 1)  # 4 windows of 30 at stride 15
HUGE = protein(2500, 2)  # 4 windows of 1022 at stride 511


# ------------------------------------------------------------------ the reference rule, by hand


def hand_spans(length: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Windows every `stride` residues, the last one flush with the end."""
    if length <= size:
        return [(0, length)]
    spans, start = [], 0
    while start + size < length:
        spans.append((start, start + size))
        start += stride
    return spans + [(length - size, length)]


def hand_owner(position: int, spans: list[tuple[int, int]]) -> int:
    """The window `position` is most central in (largest distance to the nearer edge; ties: the first)."""
    best, owner = -1, -1
    for k, (start, end) in enumerate(spans):
        if start <= position < end and min(position - start, end - 1 - position) > best:
            best, owner = min(position - start, end - 1 - position), k
    return owner


def hand_merge(sequence: str, size: int, stride: int, window_rows) -> np.ndarray:
    """Merged per-residue rows, `window_rows(window_sequence)` giving each window's ``[W, D]``."""
    spans = hand_spans(len(sequence), size, stride)
    rows = [np.asarray(window_rows(sequence[s:e])) for s, e in spans]
    return np.stack([rows[k][p - spans[k][0]] for p in range(len(sequence)) for k in [hand_owner(p, spans)]])


def hand_centred(length: int, size: int, position: int) -> tuple[int, int]:
    """The window of `size` centred on `position` (0-based), moved inside the record."""
    start = max(0, min(position - size // 2, length - size))
    return start, start + size


def hand_pll(fair_ref, sequence: str, size: int, stride: int) -> float:
    """Each residue masked in its own window, scored by the reference implementation (fair-esm)."""
    _, alphabet = fair_ref
    spans = hand_spans(len(sequence), size, stride)
    total = 0.0
    for k, (start, end) in enumerate(spans):
        owned = [p for p in range(len(sequence)) if hand_owner(p, spans) == k]
        tokens = fair_tokens(alphabet, [sequence[start:end]])
        masked = tokens.repeat(len(owned), 1)
        rows = torch.arange(len(owned))
        cols = torch.tensor([p - start + 1 for p in owned])
        masked[rows, cols] = alphabet.mask_idx
        for chunk in torch.split(torch.arange(len(owned)), 8):
            lp = fair_log_probs(fair_ref, masked[chunk])
            total += lp[torch.arange(len(chunk)), cols[chunk], tokens[0, cols[chunk]]].double().sum().item()
    return total


def hand_marginals(model, sequence: str, size: int, method: str, mutations: list[str]) -> list[float]:
    """Each substitution scored by the plain model on the window centred on it, its position shifted into it."""
    totals = []
    for mutation in mutations:
        total = 0.0
        for sub in mutation.split(":"):
            position = int(sub[1:-1])
            start, end = hand_centred(len(sequence), size, position - 1)
            local = f"{sub[0]}{position - start}{sub[-1]}"
            total += model.score(sequence[start:end], method=method, mutations=[local]).scores[0]
        totals.append(total)
    return totals


# ------------------------------------------------------------------ models


@pytest.fixture(scope="module")
def small(fair_model):
    """The session's tiny ESM-2 weights with a 30-residue limit."""
    from bionemo_lite.zoo.esm2.loading import load_esm2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_esm2(replace(fair_model.spec, max_length=30), fair_model.checkpoint_path)


def per_residue(model, sequence: str, layer: int = -1) -> np.ndarray:
    return model.embed(sequence, layer, "per_residue").embeddings[0]


# ------------------------------------------------------------------ the policy and the plan


def test_window_policy_names_and_strides():
    assert window_stride("window", 30) == 15 and window_stride("window:7", 30) == 7
    assert window_stride("error", 30) is None and window_stride("truncate", 30) is None
    for bad in ("window:0", "window:31", "window:x", "windows", "Window", "", None):
        with pytest.raises(InvalidInputError):
            window_stride(bad, 30)
    assert length_policy(False, True) == "window" and length_policy(False, True, 9) == "window:9"
    assert length_policy(True) == "truncate" and length_policy(False) == "error"
    with pytest.raises(InvalidInputError, match="not both"):
        length_policy(True, True)
    with pytest.raises(InvalidInputError, match="needs the window"):
        length_policy(False, False, 9)
    records, cut = apply_length_policy(as_records({"a": LONG}), 30, "window")
    assert records[0].sequence == LONG and cut == []  # passes whole: the model windows it


@pytest.mark.parametrize("length, stride", [(75, 15), (75, 10), (75, 30), (31, 15), (30, 15), (61, 29), (1, 15)])
def test_plan_matches_the_hand_rule(length, stride):
    plan = WindowPlan(30, stride)
    spans = hand_spans(length, 30, stride)
    assert plan.spans(length) == spans
    assert plan.owners(length).tolist() == [hand_owner(p, spans) for p in range(length)]
    assert [plan.centred(length, p) for p in range(length)] == [
        hand_centred(length, 30, p) if length > 30 else (0, length) for p in range(length)]
    assert sorted(p for _, owned in plan.assignments(length) for p in owned) == list(range(length))


# ------------------------------------------------------------------ embed against the hand reference


@pytest.mark.parametrize("policy, stride", [("window", 15), ("window:10", 10)])
def test_per_residue_embeddings_merge_by_the_rule(small, policy, stride):
    emb = small.embed({"long": LONG, "short": LONG[:20]}, [1, -1], "per_residue", on_too_long=policy)
    assert emb.ids == ["long", "short"] and emb.lengths == [75, 20]
    for layer in (1, 3):
        expected = hand_merge(LONG, 30, stride, lambda s: per_residue(small, s, layer))
        assert emb.by_layer[layer][0].shape == (75, 48)
        np.testing.assert_allclose(emb.by_layer[layer][0], expected, rtol=0, atol=TOL)
        np.testing.assert_allclose(emb.by_layer[layer][1], per_residue(small, LONG[:20], layer), rtol=0, atol=TOL)
    windows = emb.windowed["long"]
    assert list(emb.windowed) == ["long"]  # the short one was read whole
    assert (windows.size, windows.stride, windows.spans) == (30, stride, tuple(hand_spans(75, 30, stride)))
    assert emb.to_dict()["windowed"] == {"long": {"size": 30, "stride": stride, "count": len(windows.spans),
                                                  "spans": [list(s) for s in hand_spans(75, 30, stride)]}}


def test_pooled_embeddings_pool_the_merged_matrix(small):
    merged = hand_merge(LONG, 30, 15, lambda s: per_residue(small, s))
    mean = small.embed({"long": LONG}, pooling="mean", on_too_long="window").embeddings[0]
    largest = small.embed({"long": LONG}, pooling="max", on_too_long="window").embeddings[0]
    bos = small.embed({"long": LONG}, pooling="bos", on_too_long="window").embeddings[0]
    np.testing.assert_allclose(mean, merged.mean(0), rtol=0, atol=TOL)
    np.testing.assert_allclose(largest, merged.max(0), rtol=0, atol=TOL)
    np.testing.assert_allclose(bos, small.embed(LONG[:30], pooling="bos").embeddings[0], rtol=0, atol=TOL)


def test_records_that_fit_are_unchanged_by_the_policy(small):
    seqs = {"a": LONG[:30], "b": LONG[5:12]}
    for pooling in ("mean", "per_residue"):
        plain = small.embed(seqs, pooling=pooling)
        windowed = small.embed(seqs, pooling=pooling, on_too_long="window")
        assert windowed.windowed == {}
        for x, y in zip(plain.embeddings, windowed.embeddings):
            np.testing.assert_array_equal(x, y)


def test_windows_batch_under_the_token_budget(small):
    """A budget of one window per forward pass gives the same numbers as several per pass."""
    one = small.embed({"long": LONG}, pooling="per_residue", on_too_long="window", tokens_per_batch=32)
    many = small.embed({"long": LONG}, pooling="per_residue", on_too_long="window", tokens_per_batch=4096)
    np.testing.assert_allclose(one.embeddings[0], many.embeddings[0], rtol=0, atol=TOL)


# ------------------------------------------------------------------ score against the hand reference


def test_pll_takes_each_residue_from_its_window(small, fair_ref):
    scores = small.score({"long": LONG, "short": LONG[:25]}, method="pll", on_too_long="window")
    assert scores.ids == ["long", "short"] and list(scores.windowed) == ["long"]
    assert scores.scores[0] == pytest.approx(hand_pll(fair_ref, LONG, 30, 15), rel=TOL)
    assert scores.scores[1] == pytest.approx(small.score(LONG[:25]).scores[0], abs=TOL)
    assert scores.windowed["long"].spans == tuple(hand_spans(75, 30, 15))
    other_stride = small.score({"long": LONG}, method="pll", on_too_long="window:10").scores[0]
    assert other_stride == pytest.approx(hand_pll(fair_ref, LONG, 30, 10), rel=TOL)


@pytest.mark.parametrize("method", ["masked_marginals", "wt_marginals"])
def test_marginals_use_the_window_centred_on_each_position(small, method):
    mutations = ["{}1A".format(LONG[0]), f"{LONG[39]}40W", f"{LONG[74]}75C:{LONG[50]}51G", f"{LONG[44]}45K"]
    scores = small.score({"wt": LONG}, method=method, mutations=mutations, on_too_long="window")
    assert scores.ids == mutations
    np.testing.assert_allclose(scores.scores, hand_marginals(small, LONG, 30, method, mutations), rtol=0, atol=TOL)
    used = sorted({hand_centred(75, 30, int(s[1:-1]) - 1) for m in mutations for s in m.split(":")})
    assert scores.windowed["wt"].spans == tuple(used) and scores.windowed["wt"].stride is None


def test_contacts_and_logits_refuse_windows(small):
    for verb in (small.contacts, small.logits):
        with pytest.raises(InvalidInputError, match="not computed through windows") as err:
            verb({"long": LONG}, on_too_long="window")
        assert err.value.record == "long"
    assert small.logits({"short": LONG[:30]}, on_too_long="window")[0].shape == (32, 33)


def test_options_carry_the_policy(small):
    """The typed options (every door's way in) and a door's plain keywords (Triton's) reach the model."""
    emb = EmbedOptions((-1,), "mean", "window").run(small, {"long": LONG})
    keyed = options_from_keywords("embed", {"pooling": "mean", "on_too_long": "window"}).run(small, {"long": LONG})
    np.testing.assert_array_equal(emb.embeddings, keyed.embeddings)
    scores = ScoreOptions("masked_marginals", "window:10", mutations=[f"{LONG[60]}61A"]).run(small, [LONG])
    assert scores.windowed["0"].spans == ((45, 75),)
    with pytest.raises(InvalidInputError, match="window stride"):
        EmbedOptions(on_too_long="window:31").run(small, [LONG])


def test_merged_requests_keep_their_own_windowed_records(small):
    """The HTTP batcher and Triton merge concurrent requests into one call: each gets its own `windowed` back."""
    from bionemo_lite.merging import run_merged
    from bionemo_lite.records import Record

    requests = [[Record("a", LONG), Record("b", LONG[:10])], [Record("a", LONG[:12])], [Record("c", LONG[::-1])]]
    outcomes, calls = run_merged(lambda records: small.embed(records, on_too_long="window"), requests)
    assert calls == 1
    assert [sorted(o.windowed) for o in outcomes] == [["a"], [], ["c"]]
    alone = small.embed({"c": LONG[::-1]}, on_too_long="window")
    assert outcomes[2].windowed == alone.windowed
    np.testing.assert_allclose(outcomes[2].embeddings, alone.embeddings, rtol=0, atol=TOL)


# ------------------------------------------------------------------ 2,500 residues, window 1022, every door


def huge_reference(fair_model) -> np.ndarray:
    return hand_merge(HUGE, 1022, 511, lambda s: per_residue(fair_model, s))


@pytest.fixture(scope="module")
def huge_merged(fair_model):
    return huge_reference(fair_model)


def test_huge_protein_embeds_in_python(fair_model, huge_merged):
    emb = fair_model.embed({"titin-ish": HUGE}, pooling="per_residue", on_too_long="window")
    np.testing.assert_allclose(emb.embeddings[0], huge_merged, rtol=0, atol=TOL)
    assert emb.windowed["titin-ish"].spans == ((0, 1022), (511, 1533), (1022, 2044), (1478, 2500))
    with pytest.raises(InvalidInputError, match="2500 residues"):
        fair_model.embed({"titin-ish": HUGE})


def _fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records.items()))
    return path


def _cli(*args) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def test_huge_protein_embeds_through_the_cli(esm2_fair_checkpoint, huge_merged, tmp_path):
    fasta = _fasta(tmp_path / "in.fasta", {"huge": HUGE, "small": "MKTAYIAKQR"})
    out = tmp_path / "emb.parquet"
    _cli("embed", ESM2_NAME, fasta, "-o", out, "--weights", esm2_fair_checkpoint, "--pooling", "mean",
         "--window", "-q")
    rows = pq.read_table(out).to_pylist()
    assert [(r["id"], r["length"], r["truncated"], r["windowed"]) for r in rows] == [
        ("huge", 2500, False, "true"), ("small", 10, False, "false")]
    np.testing.assert_allclose(rows[0]["embedding"], huge_merged.mean(0), rtol=0, atol=TOL)
    refused = CliRunner().invoke(app, ["embed", ESM2_NAME, str(fasta), "-o", str(tmp_path / "x.parquet"),
                                       "--weights", str(esm2_fair_checkpoint), "--window", "--truncate", "-q"])
    assert refused.exit_code != 0 and "not both" in refused.output + str(refused.stderr)


def test_huge_protein_mutations_through_the_cli(fair_model, esm2_fair_checkpoint, tmp_path):
    fasta = _fasta(tmp_path / "wt.fasta", {"wt": HUGE})
    mutations = tmp_path / "muts.txt"
    picked = [f"{HUGE[p - 1]}{p}A" for p in (3, 1300, 2499)]
    mutations.write_text("\n".join(picked) + "\n")
    out = tmp_path / "effects.csv"
    _cli("score", ESM2_NAME, fasta, "-o", out, "--weights", esm2_fair_checkpoint, "--mutations", mutations,
         "--window", "--window-stride", "300", "-q")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["mutation"], r["windowed"]) for r in rows] == [(m, "True") for m in picked]
    expected = hand_marginals(fair_model, HUGE, 1022, "masked_marginals", picked)
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=0, atol=TOL)


@pytest.fixture(scope="module")
def server(tmp_path_factory, esm2_fair_checkpoint):
    with serve_cli(tmp_path_factory.mktemp("windows"), "--weights", f"{ESM2_NAME}={esm2_fair_checkpoint}") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=600) as c:
        yield c


def test_huge_protein_embeds_over_http(client, huge_merged):
    url = f"/v1/models/{ESM2_NAME}/embed"
    body = {"sequences": [{"id": "huge", "sequence": HUGE}, "MKTAYIAKQR"], "pooling": "per_residue", "window": True}
    answer = client.post(url, json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["ids"] == ["huge", "1"] and result["lengths"] == [2500, 10]
    assert result["windowed"] == {"huge": {"size": 1022, "stride": 511, "count": 4,
                                           "spans": [[0, 1022], [511, 1533], [1022, 2044], [1478, 2500]]}}
    np.testing.assert_allclose(np.asarray(result["embeddings"][0]), huge_merged, rtol=0, atol=TOL)
    refused = client.post(url, json={"sequences": [HUGE]})
    assert refused.status_code == 422 and "2500 residues" in refused.text
    for bad in ({"window": True, "truncate": True}, {"window_stride": 100}, {"window": True, "window_stride": 2000},
                {"window": True, "window_stride": 0}):
        refused = client.post(url, json={"sequences": [HUGE], **bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["request_id"]


def test_huge_protein_mutations_over_http(client, fair_model):
    mutations = [f"{HUGE[1999]}2000G", f"{HUGE[9]}10W:{HUGE[2489]}2490A"]
    answer = client.post(f"/v1/models/{ESM2_NAME}/score", json={
        "sequences": [{"id": "wt", "sequence": HUGE}], "method": "wt_marginals", "mutations": mutations,
        "window": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["ids"] == mutations
    np.testing.assert_allclose(answer.json()["scores"], hand_marginals(fair_model, HUGE, 1022, "wt_marginals",
                                                                       mutations), rtol=0, atol=TOL)
    assert answer.json()["windowed"]["wt"]["spans"] == [[0, 1022], [1478, 2500]]


@pytest.mark.parametrize("method", ["masked_marginals", "wt_marginals"])
def test_huge_protein_scores_in_python(fair_model, method):
    """(``pll`` over 2,500 residues is 2,500 masked passes over 1,022 residues, ~20 min on the shared test CPU:
    the rule is checked on 75 residues above, and the doors pass the policy alike for every method.)"""
    mutations = [f"{HUGE[0]}1A", f"{HUGE[1249]}1250W:{HUGE[2499]}2500C", f"{HUGE[600]}601G"]
    scores = fair_model.score({"wt": HUGE}, method=method, mutations=mutations, on_too_long="window")
    np.testing.assert_allclose(scores.scores, hand_marginals(fair_model, HUGE, 1022, method, mutations),
                               rtol=0, atol=TOL)
    assert scores.windowed["wt"].spans == ((0, 1022), (89, 1111), (738, 1760), (1478, 2500))


# ------------------------------------------------------------------ the other families: ESM-1b, ProtT5


@pytest.fixture(scope="module")
def esm1b(tmp_path_factory):
    from esm1_fixtures import load_quietly
    from bionemo_lite.zoo.esm1 import ESM1B
    from bionemo_lite.zoo.esm1.testing import tiny_checkpoint

    return load_quietly(ESM1B, tiny_checkpoint(tmp_path_factory.mktemp("esm1b")))


def test_esm1b_embeds_and_scores_through_windows(esm1b):
    """ESM-1b (learned positions, 1022 at most) reuses ESM-2's verbs: the same rule with its real window."""
    sequence = protein(1100, 3)  # windows (0, 1022) and (78, 1100)
    emb = esm1b.embed({"p": sequence}, pooling="per_residue", on_too_long="window")
    expected = hand_merge(sequence, 1022, 511, lambda s: per_residue(esm1b, s))
    np.testing.assert_allclose(emb.embeddings[0], expected, rtol=0, atol=TOL)
    assert emb.windowed["p"].spans == ((0, 1022), (78, 1100))
    mutation = f"{sequence[1089]}1090A"
    scores = esm1b.score({"p": sequence}, method="masked_marginals", mutations=[mutation], on_too_long="window")
    local = esm1b.score(sequence[78:], method="masked_marginals", mutations=[f"{sequence[1089]}1012A"])
    assert scores.scores[0] == pytest.approx(local.scores[0], abs=TOL)


def test_prott5_embeds_through_windows(tmp_path_factory):
    pytest.importorskip("sentencepiece")
    import bionemo_lite as bl
    from bionemo_lite.zoo.prott5.testing import train_spiece, write_full

    spiece = train_spiece(tmp_path_factory.mktemp("spiece"), "ALGVSREDTIPKFQNYMHWCXBOUZ")
    folder = write_full(tmp_path_factory.mktemp("prott5") / "full", seed=1, spiece=spiece)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bl.load("prot_t5_xl_uniref50", weights=folder, max_length=20)
    sequence = LONG[:50]  # windows of 20 at stride 10: (0, 20) ... (30, 50)
    emb = model.embed({"p": sequence}, pooling="per_residue", on_too_long="window")
    expected = hand_merge(sequence, 20, 10, lambda s: per_residue(model, s))
    np.testing.assert_allclose(emb.embeddings[0], expected, rtol=0, atol=TOL)
    mean = model.embed({"p": sequence}, pooling="mean", on_too_long="window:5").embeddings[0]
    np.testing.assert_allclose(mean, hand_merge(sequence, 20, 5, lambda s: per_residue(model, s)).mean(0),
                               rtol=0, atol=TOL)
    assert emb.windowed["p"].spans == tuple(hand_spans(50, 20, 10))


# ------------------------------------------------------------------ Triton's model.py


@pytest.fixture(scope="module")
def triton_client(tmp_path_factory, esm2_fair_checkpoint):
    from bionemo_lite.triton.client import TritonClient
    from bionemo_lite.triton.export import export_model
    from bionemo_lite.triton.launch import TritonServer

    folder = tmp_path_factory.mktemp("triton-windows")
    export_model(ESM2_NAME, folder / "repo", weights=esm2_fair_checkpoint, verbs=["embed", "score"], num_threads=1)
    server = TritonServer(folder / "repo", log_path=folder / "triton.log").start()
    try:
        with TritonClient(server.http_url, "http") as client:
            yield client
    finally:
        server.stop()


@pytest.mark.slow  # starts a tritonserver
def test_triton_scores_through_windows_and_refuses_windowed_embeddings(triton_client, fair_model):
    """Score runs the in-process model behind Triton (the policy passes through `options_from_keywords`);
    embed runs one ONNX graph call per record, so a record that needs windows is refused by name."""
    sequence = protein(1100, 4)
    mutations = [f"{sequence[1049]}1050A", f"{sequence[4]}5W"]
    served = triton_client.score(ESM2_NAME, {"wt": sequence}, method="masked_marginals", mutations=mutations,
                                 on_too_long="window")
    np.testing.assert_allclose(served.scores, hand_marginals(fair_model, sequence, 1022, "masked_marginals",
                                                             mutations), rtol=0, atol=TOL)
    local = fair_model.score({"wt": sequence}, method="masked_marginals", mutations=mutations, on_too_long="window")
    assert list(served.windowed) == ["wt"] and served.windowed == local.windowed  # the client keeps which and how
    with pytest.raises(InvalidInputError, match="does not read sequences through windows") as err:
        triton_client.embed(ESM2_NAME, {"long": sequence, "short": "MKT"}, on_too_long="window")
    assert err.value.record == "long"
    short = triton_client.embed(ESM2_NAME, {"short": "MKTAYIAKQR"}, on_too_long="window")
    np.testing.assert_allclose(short.embeddings, fair_model.embed({"short": "MKTAYIAKQR"}).embeddings,
                               rtol=0, atol=TOL)
