"""ProtT5 plugin: tokenizer, checkpoint loading, parity with transformers' T5EncoderModel, ONNX.

The checkpoints are tiny random T5 models (`bionemo_lite.zoo.prott5.testing`) in
the layouts Rostlab publishes: a full encoder-decoder (`T5ForConditionalGeneration`,
safetensors, plain and sharded) and an encoder-only float16 `pytorch_model.bin`,
each with a real `spiece.model` trained by sentencepiece (and one without).
The reference outputs are computed the upstream way: `" ".join(seq)` with
U Z O B -> X, tokenized by sentencepiece, `</s>` appended, `T5EncoderModel`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bionemo_lite as bl
from bionemo_lite.errors import CheckpointError, InvalidInputError, WeightsNotFoundError
from bionemo_lite.zoo.prott5.testing import TINY_CONFIG, train_spiece, write_full, write_half_encoder
from corrupt_files import DAMAGES, assert_refused, damage

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

FULL = "prot_t5_xl_uniref50"
HALF = "prot_t5_xl_half_uniref50-enc"
# The published order (reference: agemagician/ProtTrans issue 42): ids 3.. for these letters.
PUBLISHED_ORDER = "ALGVSREDTIPKFQNYMHWCXBOUZ"
# Lengths 1..140: distances past 128 reach T5's last relative-position bucket.
SEQS = [
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
    "ACDEFGHIKLMNPQRSTVWYXBUZO" * 5 + "MKTAYIAKQRQISFV",
    "M",
    "GSHMUZOBX",
    "PEPTIDEWQRSTYVLKAAGG",
]
PARITY_ATOL = 1e-5


# ---------------------------------------------------------------- checkpoints (bionemo_lite.zoo.prott5.testing)
@pytest.fixture(scope="session")
def spiece_model(tmp_path_factory) -> Path:
    return train_spiece(tmp_path_factory.mktemp("spiece"), PUBLISHED_ORDER)


@pytest.fixture(scope="session")
def full_dir(tmp_path_factory, spiece_model) -> Path:
    """Encoder-decoder checkpoint (as Rostlab/prot_t5_xl_uniref50): safetensors + spiece.model."""
    return write_full(tmp_path_factory.mktemp("prott5") / "full", seed=1, spiece=spiece_model)


@pytest.fixture(scope="session")
def sharded_dir(tmp_path_factory, full_dir) -> Path:
    """The same full model saved as several safetensors shards with an index, without spiece.model."""
    folder = tmp_path_factory.mktemp("prott5") / "sharded"
    model = transformers.T5ForConditionalGeneration.from_pretrained(full_dir)
    model.save_pretrained(folder, max_shard_size="40KB")
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


@pytest.fixture(scope="session")
def half_dir(tmp_path_factory, spiece_model) -> Path:
    """Encoder-only float16 checkpoint (as Rostlab/prot_t5_xl_half_uniref50-enc): pytorch_model.bin."""
    return write_half_encoder(tmp_path_factory.mktemp("prott5") / "half", seed=2, spiece=spiece_model)


def copy_dir(src: Path, dest: Path, without: tuple[str, ...] = ()) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*without))
    return dest


def tiny_spec(name: str = FULL) -> bl.ModelSpec:
    """The variant's spec with the tiny shape as its published config (loads without the size warning)."""
    return dataclasses.replace(bl.get_spec(name), config=TINY_CONFIG | {"relative_attention_max_distance": 128})


def load_quiet(folder: Path, name: str = FULL, **options):
    from bionemo_lite.zoo.prott5.model import load_prott5

    return load_prott5(tiny_spec(name), folder, **options)


# ---------------------------------------------------------------- the reference (upstream's way)
def reference_ids(folder: Path, seqs: list[str]) -> list[list[int]]:
    spaced = [" ".join(re.sub(r"[UZOB]", "X", s)) for s in seqs]
    if (folder / "spiece.model").is_file():
        sp = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
        return [sp.encode(s) + [1] for s in spaced]
    table = {aa: i for i, aa in enumerate(PUBLISHED_ORDER, start=3)}
    return [[table[aa] for aa in s.split()] + [1] for s in spaced]


def reference_hidden(folder: Path, seqs: list[str]) -> tuple:
    """`T5EncoderModel` hidden states (fp32, CPU) for a padded batch of `seqs`."""
    model = transformers.T5EncoderModel.from_pretrained(folder).float().eval()
    ids = reference_ids(folder, seqs)
    width = max(map(len, ids))
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, tokens in enumerate(ids):
        input_ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
    return out.hidden_states


# ---------------------------------------------------------------- specs
def test_specs_are_registered_with_the_published_architecture():
    specs = {s.name: s for s in bl.list_models(pattern="prot_t5_*")}
    assert set(specs) == {FULL, HALF}
    for spec in specs.values():
        assert spec.family == "prott5" and spec.verbs == frozenset({"embed"}) and spec.input_kind == "protein"
        assert dict(spec.config) == {
            "num_layers": 24, "d_model": 1024, "d_ff": 16384, "num_heads": 32, "d_kv": 128,
            "feed_forward_proj": "relu", "relative_attention_num_buckets": 32,
            "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6, "vocab_size": 128,
        }
        assert spec.max_length >= 1022 and "MIT" in spec.license
        source = spec.weights[0]
        assert source.format == "huggingface" and source.entry is None
        files = {f.filename: f for f in source.files}
        assert files["pytorch_model.bin"].required and files["config.json"].required
        assert not files["spiece.model"].required
        assert re.fullmatch(r"[0-9a-f]{64}", files["pytorch_model.bin"].sha256)
        assert all(f.url.startswith("https://huggingface.co/Rostlab/") for f in source.files)
        # The declared parameter count is the encoder's, counted by transformers without allocating it
        # (one- and two-block encoders on the meta device; the other blocks are copies of the second).
        counts = []
        for layers in (1, 2):
            with torch.device("meta"):
                config = transformers.T5Config(**(dict(spec.config) | {"num_layers": layers}))
                encoder = transformers.T5EncoderModel(config)
            counts.append(sum(p.numel() for p in encoder.parameters()))
        assert spec.params == counts[0] + (spec.config["num_layers"] - 1) * (counts[1] - counts[0])


def test_listing_the_plugin_does_not_import_torch():
    code = "import sys, bionemo_lite.zoo.prott5 as p; p.specs(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- tokenizer
def test_tokenizer_ids_for_all_25_letters(spiece_model):
    from bionemo_lite.zoo.prott5.tokenizer import ProtT5Tokenizer, spiece_residue_ids

    tok = ProtT5Tokenizer()
    expected = {aa: 3 + PUBLISHED_ORDER.index(aa) for aa in "ACDEFGHIKLMNPQRSTVWYX"} | dict.fromkeys("UZOB", 23)
    assert len(expected) == 25
    for aa, idx in expected.items():
        assert tok.encode(aa).tolist() == [idx, 1], aa
    assert spiece_residue_ids(spiece_model) == expected
    batch = tok.batch(["MK", "AUXB"])
    assert batch["input_ids"].tolist() == [[19, 14, 1, 0, 0], [3, 23, 23, 23, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert ProtT5Tokenizer.residue_mask(batch).tolist() == [[True, True, False, False, False], [True] * 4 + [False]]


def test_spiece_that_disagrees_is_refused(tmp_path, half_dir):
    folder = copy_dir(half_dir, tmp_path / "wrong", without=("spiece.model",))
    train_spiece(tmp_path / "sp", "LAGVSREDTIPKFQNYMHWCXBOUZ")  # A and L swapped
    shutil.copy(tmp_path / "sp" / "spiece.model", folder / "spiece.model")
    with pytest.raises(CheckpointError, match=r"'A': spiece.model 4, built-in 3; 'L': spiece.model 3, built-in 4"):
        load_quiet(folder)


def test_spiece_missing_a_residue_is_refused(tmp_path, half_dir):
    folder = copy_dir(half_dir, tmp_path / "odd", without=("spiece.model",))
    train_spiece(tmp_path / "sp", PUBLISHED_ORDER.replace("C", ""))  # C becomes <unk>, later ids shift
    shutil.copy(tmp_path / "sp" / "spiece.model", folder / "spiece.model")
    with pytest.raises(CheckpointError, match=r"'C': spiece.model 2, built-in 22"):
        load_quiet(folder)


def test_unreadable_spiece_is_refused(tmp_path, half_dir):
    folder = copy_dir(half_dir, tmp_path / "junk", without=("spiece.model",))
    (folder / "spiece.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(CheckpointError, match="not a readable sentencepiece model"):
        load_quiet(folder)


# ---------------------------------------------------------------- parity with transformers
@pytest.mark.parametrize("layout", ["full", "sharded", "half"])
def test_parity_with_transformers(layout, request):
    folder = request.getfixturevalue(f"{layout}_dir")
    model = load_quiet(folder, name=HALF if layout == "half" else FULL)
    hidden = reference_hidden(folder, SEQS)
    assert len(hidden) == 3
    worst = 0.0
    for layers in ([0, 1, 2], [-1]):
        per_res = model.embed(SEQS, layer=layers, pooling="per_residue")
        mean = model.embed(SEQS, layer=layers, pooling="mean")
        assert per_res.ids == [str(i) for i in range(len(SEQS))] and per_res.lengths == [len(s) for s in SEQS]
        for lay in per_res.layers:
            for i, seq in enumerate(SEQS):
                ref = hidden[lay][i, : len(seq)].numpy()  # without </s>
                assert per_res.by_layer[lay][i].shape == (len(seq), 32)
                worst = max(worst, np.abs(per_res.by_layer[lay][i] - ref).max())
                worst = max(worst, np.abs(mean.by_layer[lay][i] - ref.mean(0)).max())
    print(f"\nProtT5 {layout}: max abs diff vs transformers T5EncoderModel = {worst:.2e}")
    assert worst <= PARITY_ATOL


def test_last_layer_is_last_hidden_state_after_final_norm(full_dir):
    model = load_quiet(full_dir)
    hidden = reference_hidden(full_dir, SEQS[:1])
    out = model.embed(SEQS[0], layer=[2, -1], pooling="per_residue")
    assert out.layers == (2,)  # -1 and 2 are the same layer
    np.testing.assert_allclose(out.embeddings[0], hidden[-1][0, : len(SEQS[0])].numpy(), atol=PARITY_ATOL)


def test_without_spiece_the_builtin_vocabulary_gives_the_same_embeddings(tmp_path, full_dir):
    bare = copy_dir(full_dir, tmp_path / "bare", without=("spiece.model",))
    with_sp, without_sp = load_quiet(full_dir), load_quiet(bare)
    assert without_sp.tokenizer.source == "built-in" and with_sp.tokenizer.source.endswith("spiece.model")
    a = with_sp.embed(SEQS, pooling="per_residue").embeddings
    b = without_sp.embed(SEQS, pooling="per_residue").embeddings
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_batched_equals_one_by_one(full_dir):
    model = load_quiet(full_dir)
    batched = model.embed(SEQS, layer=[0, 1, 2], pooling="per_residue")
    small_batches = model.embed(SEQS, layer=[0, 1, 2], pooling="per_residue", tokens_per_batch=40)
    for i, seq in enumerate(SEQS):
        alone = model.embed({"x": seq}, layer=[0, 1, 2], pooling="per_residue")
        for lay in (0, 1, 2):
            np.testing.assert_allclose(batched.by_layer[lay][i], alone.by_layer[lay][0], rtol=0, atol=1e-5)
            np.testing.assert_allclose(small_batches.by_layer[lay][i], alone.by_layer[lay][0], rtol=0, atol=1e-5)


def test_fp16_encoder_only_checkpoint_computes_in_fp32_on_cpu(half_dir):
    model = load_quiet(half_dir, name=HALF)
    assert model.weights_dtype == "float16" and model.dtype == "float32"
    assert {p.dtype for p in model.encoder.parameters()} == {torch.float32}
    with pytest.warns(UserWarning, match="float32 on CPU"):
        forced = load_quiet(half_dir, name=HALF, dtype="float16")
    assert forced.dtype == "float32"
    out = forced.embed(SEQS[:2])
    assert out.embeddings.dtype == np.float32 and np.isfinite(out.embeddings).all()


def test_half_precision_path_keeps_wo_and_norms_in_fp32(full_dir):
    """The GPU default (fp16 matmuls, fp32 residual stream, fp32 `wo`), run on CPU where torch allows it."""
    from bionemo_lite.zoo.prott5.checkpoint import encoder_state_dict, find_weights, read_config, read_encoder_tensors
    from bionemo_lite.zoo.prott5.network import build_encoder
    from bionemo_lite.zoo.prott5.tokenizer import ProtT5Tokenizer

    arch = read_config(full_dir)
    state = encoder_state_dict(read_encoder_tensors(find_weights(full_dir)), arch, full_dir)
    fp32, fp16 = (build_encoder(arch, state, "cpu", dtype) for dtype in (torch.float32, torch.float16))
    dtypes = {name: p.dtype for name, p in fp16.named_parameters()}
    assert dtypes["layers.1.wo.weight"] == dtypes["layers.1.ff_norm.weight"] == torch.float32
    assert dtypes["layers.1.wi.weight"] == dtypes["layers.1.q.weight"] == dtypes["embed.weight"] == torch.float16
    arrays = ProtT5Tokenizer().batch(SEQS)
    ids, mask = torch.from_numpy(arrays["input_ids"]), torch.from_numpy(arrays["attention_mask"])
    with torch.no_grad():
        want = fp32(ids, mask, layers=[1, 2])
        for eager in (False, True):
            got = fp16(ids, mask, layers=[1, 2], eager=eager)
            for lay in (1, 2):
                assert got[lay].dtype == torch.float32 and torch.isfinite(got[lay]).all()
                scale = want[lay].abs().max()
                assert (got[lay] - want[lay]).abs().max() <= 1e-2 * scale


# ---------------------------------------------------------------- loading through the registry
def test_load_by_name_warns_about_a_custom_size(full_dir):
    published = r"not the published prot_t5_xl_uniref50 architecture.*d_model 32 \(published 1024\)"
    with pytest.warns(UserWarning, match=published):
        model = bl.load(FULL, weights=full_dir)
    assert isinstance(model, bl.BioModel) and isinstance(model, bl.Embedder)
    assert model.config["d_model"] == 32 and model.config["num_layers"] == 2
    out = model.embed({"p1": "MKTAYIAKQR", "p2": "GSH"}, pooling="mean")
    assert out.ids == ["p1", "p2"] and out.embeddings.shape == (2, 32) and out.dim == 32
    assert out.to_dict()["pooling"] == "mean"
    with pytest.warns(UserWarning, match="not the published"):
        by_file = bl.load(FULL, weights=full_dir / "model.safetensors")  # a file inside the directory
    np.testing.assert_array_equal(by_file.embed({"p1": "MKTAYIAKQR", "p2": "GSH"}).embeddings, out.embeddings)


def test_load_from_the_cache_folder(half_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("BIONEMO_LITE_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsNotFoundError, match="pytorch_model.bin"):
        bl.load(HALF)
    copy_dir(half_dir, tmp_path / "home" / HALF)
    with pytest.warns(UserWarning, match="not the published"):
        model = bl.load(HALF)
    assert model.embed("MKT").embeddings.shape == (1, 32)


def test_max_length_option_and_length_policy(full_dir):
    model = load_quiet(full_dir, max_length=10)
    assert model.max_length == 10
    with pytest.raises(InvalidInputError, match="more than the model's maximum of 10") as err:
        model.embed({"long": "A" * 11})
    assert err.value.record == "long"
    cut = model.embed({"long": "MKTAYIAKQRQISF"}, on_too_long="truncate", pooling="per_residue")
    assert cut.truncated == ["long"] and cut.lengths == [10] and cut.embeddings[0].shape == (10, 32)
    whole = model.embed("MKTAYIAKQR", pooling="per_residue").embeddings[0]
    np.testing.assert_allclose(cut.embeddings[0], whole, atol=1e-6)
    assert load_quiet(full_dir).max_length == bl.get_spec(FULL).max_length
    with pytest.raises(InvalidInputError, match="max_length must be a positive integer"):
        load_quiet(full_dir, max_length=0)


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("inputs", "kwargs", "match", "record", "position"),
    [
        ({"a": "MKT", "bad": "MKJAA"}, {}, "invalid residue 'J'", "bad", 3),
        ({"gap": "MK-T"}, {}, "gaps are not allowed", "gap", 3),
        ({"e": "   "}, {}, "empty sequence", "e", None),
        ([("x", "MKT"), ("x", "GSH")], {}, "duplicate record id", "x", None),
        (["MKT"], {"pooling": "bos"}, "pooling must be one of mean, max, per_residue", None, None),
        (["MKT"], {"layer": 3}, "layer 3 does not exist", None, None),
        ([], {}, "no input records", None, None),
    ],
)
def test_invalid_inputs_name_the_record(full_dir, inputs, kwargs, match, record, position):
    model = load_quiet(full_dir)
    with pytest.raises(InvalidInputError, match=match) as err:
        model.embed(inputs, **kwargs)
    assert err.value.record == record and err.value.position == position


def test_lowercase_is_accepted_like_uppercase(full_dir):
    model = load_quiet(full_dir)
    np.testing.assert_array_equal(model.embed("mktay").embeddings, model.embed("MKTAY").embeddings)


# ---------------------------------------------------------------- bad checkpoints
def _write_state(folder: Path, state: dict, config_from: Path) -> Path:
    folder.mkdir(parents=True)
    torch.save(state, folder / "pytorch_model.bin")
    shutil.copy(config_from / "config.json", folder / "config.json")
    return folder


def test_missing_and_unknown_keys_are_listed(tmp_path, half_dir):
    state = torch.load(half_dir / "pytorch_model.bin", weights_only=True)
    missing = dict(state)
    del missing["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys: encoder\.block\.1\.layer\.1\.DenseReluDense\.wo\."):
        load_quiet(_write_state(tmp_path / "missing", missing, half_dir))
    extra = state | {"encoder.block.0.layer.0.SelfAttention.q.bias": torch.zeros(32), "pooler.weight": torch.zeros(2)}
    unknown = r"unknown keys: encoder\.block\.0\.layer\.0\.SelfAttention\.q\.bias, pooler\.weight"
    with pytest.raises(CheckpointError, match=unknown):
        load_quiet(_write_state(tmp_path / "extra", extra, half_dir))


def test_config_that_does_not_match_the_tensors(tmp_path, half_dir):
    folder = copy_dir(half_dir, tmp_path / "wide")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"d_ff": 128}))
    with pytest.warns(UserWarning, match=r"d_ff 128 \(published 64\)"), pytest.raises(CheckpointError) as err:
        load_quiet(folder)
    assert "wrong shapes: encoder.block.0.layer.1.DenseReluDense.wi.weight (64, 32) (config says (128, 32))" in str(
        err.value
    )


@pytest.mark.parametrize(
    ("remove", "config_patch", "match"),
    [
        (("config.json",), None, "no config.json"),
        (("pytorch_model.bin",), None, "no weights found"),
        ((), {"model_type": "bert"}, "model_type is 'bert'"),
        ((), {"vocab_size": 20}, "cannot hold the ProtT5 vocabulary"),
        ((), {"feed_forward_proj": "tanh"}, "feed_forward_proj 'tanh' is not supported"),
    ],
)
def test_unreadable_checkpoints(tmp_path, half_dir, remove, config_patch, match):
    folder = copy_dir(half_dir, tmp_path / "ckpt", without=remove)
    if config_patch:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | config_patch))
    with pytest.raises(CheckpointError, match=match):
        load_quiet(folder)


def test_pickle_with_code_is_refused(tmp_path, half_dir):
    folder = copy_dir(half_dir, tmp_path / "evil", without=("pytorch_model.bin",))
    torch.save({"model": argparse.Namespace(cmd="anything")}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_quiet(folder)


@pytest.mark.parametrize("layout, weights", [("full", "model.safetensors"), ("half", "pytorch_model.bin")])
@pytest.mark.parametrize("kind", DAMAGES)
def test_damaged_or_malicious_weights_are_checkpoint_errors_naming_the_file(request, tmp_path, layout, weights, kind):
    folder = copy_dir(request.getfixturevalue(f"{layout}_dir"), tmp_path / "ckpt")
    damaged = damage(folder / weights, kind, tmp_path / "code-ran")
    assert_refused(lambda: load_quiet(folder), damaged, tmp_path / "code-ran")


# ---------------------------------------------------------------- ONNX
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter (dynamo=False) is legacy
def test_onnx_export_matches_torch(tmp_path, full_dir):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = load_quiet(full_dir)
    enc = model.onnx_encoder()
    assert enc.bos_index is None and enc.input_names == ["input_ids", "attention_mask"]
    path = tmp_path / "prott5.onnx"
    torch.onnx.export(
        enc.module, enc.example_inputs, str(path), input_names=enc.input_names, output_names=enc.output_names,
        dynamic_axes=enc.dynamic_axes, opset_version=17, dynamo=False,
    )
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (SEQS[:1], SEQS, SEQS[2:4], ["MKTAYIAKQR" * 3, "G"]):
        arrays = enc.tokenize(batch)
        assert all(a.dtype == np.int64 for a in arrays.values())
        (got,) = session.run(None, arrays)
        with torch.no_grad():
            want = enc.module(*(torch.from_numpy(arrays[n]) for n in enc.input_names)).numpy()
        valid = arrays["attention_mask"].astype(bool)
        worst = max(worst, np.abs(got - want)[valid].max())
        # Pooled the way a server would, with the plugin's residue mask: equals embed().
        mask = enc.residue_mask(arrays)
        assert mask.sum(1).tolist() == [len(s) for s in batch]
        pooled = (got * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        np.testing.assert_allclose(pooled, model.embed(batch).embeddings, atol=1e-4)
    # The tokenizer declared as data for servers without torch gives the same ids.
    spec = enc.extra["tokenizer"]
    assert len(spec["vocab"]) == 25 and spec["prepend"] == [] and spec["append"] == [1] and spec["pad"] == 0
    for seq in SEQS:
        want_ids = enc.tokenize([seq])["input_ids"][0].tolist()
        assert [spec["vocab"][aa] for aa in seq] + spec["append"] == want_ids
    assert enc.extra["layers"] == [enc.extra["num_layers"]] == [2] and enc.extra["embed_dim"] == 32
    print(f"\nProtT5 ONNX: max abs diff onnxruntime vs torch = {worst:.2e}")
    assert worst <= 1e-4
    with pytest.raises(InvalidInputError, match="invalid residue '1'"):
        enc.tokenize(["MK1"])
