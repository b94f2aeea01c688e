"""MegaMolBART plugin on random weights: spec, tokenizer, .nemo and export loading,
parity with a reference forward, input errors, embedding semantics, batching."""

from __future__ import annotations

import re
import tarfile

import numpy as np
import pytest
import torch

import bionemo_lite as bl
from bionemo_lite import chem
from bionemo_lite.errors import CheckpointError, InvalidInputError
from corrupt_files import DAMAGES, assert_refused, damage
from megamolbart_fixtures import (
    DRUG_SMILES,
    SMALL_CHEM_TOKENS,
    UNPARSABLE_SMILES,
    NemoLayout,
    random_nemo_state,
    reference_forward,
    write_nemo_archive,
)
from bionemo_lite.zoo.megamolbart import count_parameters, specs
from bionemo_lite.zoo.megamolbart.model import MegaMolBARTModel, pad_ids
from bionemo_lite.zoo.megamolbart.network import MegaMolBARTConfig, MegaMolBARTNetwork
from bionemo_lite.zoo.megamolbart.tokenizer import CHEM_TOKEN_START, SMILES_REGEX, MegaMolBARTTokenizer, default_vocabulary

FEW = ["CC(=O)Oc1ccccc1C(=O)O", "CCO", "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "c1ccccc1", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"]
LAYOUTS = {
    "bionemo-v1-flat": NemoLayout(flat=True, tied_head=False, tanh_gelu=True, seed=1),
    "nemo-sections-tied": NemoLayout(flat=False, tied_head=True, tanh_gelu=False, enc_layers=2, dec_layers=3, seed=2),
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=list(LAYOUTS))
def nemo_checkpoint(request, tmp_path_factory):
    layout = LAYOUTS[request.param]
    state = random_nemo_state(layout)
    path = write_nemo_archive(tmp_path_factory.mktemp("nemo") / "megamolbart_0_2_0.nemo", layout, state,
                              gzip=layout.flat)
    return path, layout, state


@pytest.fixture(scope="module")
def random_model() -> MegaMolBARTModel:
    cfg = {"hidden_size": 32, "num_layers": 2, "decoder_num_layers": 2, "ffn_hidden_size": 64,
           "num_attention_heads": 4, "max_position_embeddings": 64}
    return MegaMolBARTModel.from_config(cfg, seed=3)


# ----- spec and tokenizer ----------------------------------------------------------------------
def test_spec_is_registered_with_its_card():
    spec = bl.get_spec("megamolbart")
    assert spec.family == "megamolbart"
    assert spec.verbs == {"embed", "decode", "generate", "score"}
    assert spec.input_kind == "smiles" and spec.max_length == 512
    assert spec.license == "Apache-2.0"
    (source,) = spec.weights
    assert source.format == "nemo" and source.entry.endswith(".nemo")
    assert source.files[0].sha256 is None and "ngc" in source.homepage.lower()
    assert spec in bl.list_models(verb="generate")
    assert specs()[0] == spec


def test_published_parameter_count_matches_the_network():
    cfg = specs()[0].config
    net = MegaMolBARTNetwork(MegaMolBARTConfig(
        vocab_size=cfg["padded_vocab_size"], hidden_size=cfg["hidden_size"], num_layers=cfg["num_layers"],
        decoder_num_layers=cfg["decoder_num_layers"], ffn_hidden_size=cfg["ffn_hidden_size"],
        num_attention_heads=cfg["num_attention_heads"], max_position_embeddings=cfg["max_position_embeddings"],
    ))
    actual = sum(t.numel() for t in net.canonical_state_dict().values())
    assert actual == count_parameters() == specs()[0].params
    assert 40e6 < actual < 50e6  # "45M parameters" in the model card


def test_default_vocabulary_layout():
    vocab = default_vocabulary()
    assert vocab[:6] == ["<PAD>", "?", "^", "&", "<MASK>", "<SEP>"]
    assert vocab[CHEM_TOKEN_START:CHEM_TOKEN_START + 4] == ["C", "c", "(", ")"]
    tok = MegaMolBARTTokenizer()
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.mask_id, tok.sep_id) == (0, 1, 2, 3, 4, 5)
    assert min(tok.allowed_output_ids()[1:]) == CHEM_TOKEN_START and tok.eos_id in tok.allowed_output_ids()


def test_tokenizer_follows_the_megamolbart_regex():
    tok = MegaMolBARTTokenizer()
    assert tok.regex == SMILES_REGEX
    assert tok.tokenize("C[C@@H](Cl)c1ccc(Br)cc1/C=C\\N%12") == [
        "C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "c", "(", "Br", ")", "c", "c", "1", "/", "C", "=",
        "C", "\\", "N", "%12",
    ]
    ids = tok.encode("CC(=O)O")
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == "CC(=O)O"
    small = MegaMolBARTTokenizer(["<PAD>", "?", "^", "&", "<MASK>", "<SEP>", "C", "O"])
    assert small.encode("COC") == [6, 7, 6]
    with pytest.raises(InvalidInputError) as err:
        small.encode("CCN", record="amine")
    assert err.value.record == "amine" and err.value.position == 3 and "'N'" in err.value.reason


def test_tokenizer_refuses_a_vocabulary_without_the_special_tokens():
    with pytest.raises(CheckpointError, match="must start with"):
        MegaMolBARTTokenizer(["C", "c", "O"])


# ----- .nemo loading, parity with the reference -------------------------------------------------
def test_nemo_archive_loads_and_matches_the_reference_forward(nemo_checkpoint):
    path, layout, state = nemo_checkpoint
    model = bl.load("megamolbart", weights=path)
    assert model.network.config.vocab_size == layout.padded_vocab  # NeMo's padded vocabulary
    assert model.network.config.num_layers == layout.enc_layers
    assert model.network.config.decoder_num_layers == layout.dec_layers
    assert model.network.config.gelu_approximate == ("tanh" if layout.tanh_gelu else "none")
    assert model.tokenizer.vocab == layout.vocab  # read from the archive, not the built-in one

    smiles = ["CC(=O)Oc1ccccc1C(=O)O", "CCO", "c1ccc2[nH]ccc2c1"]
    ids = [model.tokenizer.encode(chem.canonical_smiles(s)) for s in smiles]
    enc, mask = pad_ids(ids, 0, torch.device("cpu"))
    dec, _ = pad_ids([[2, *r] for r in ids], 0, torch.device("cpu"))
    ref_hidden, ref_logits = reference_forward(state, layout, enc, mask, dec)

    hiddens, hmask = model.encode(smiles)
    assert np.array_equal(hmask, mask.numpy())
    diff = np.abs(hiddens - np.where(hmask[..., None], ref_hidden.numpy(), 0.0)).max()
    with torch.no_grad():
        logits = model.network(enc, mask, dec)
    dmask = dec != 0
    logit_diff = (logits - ref_logits)[dmask].abs().max().item()
    print(f"\nnemo layout flat={layout.flat} tied_head={layout.tied_head}: max |hiddens - ref| = {diff:.2e}, "
          f"max |logits - ref| = {logit_diff:.2e}")
    assert diff <= 1e-5 and logit_diff <= 1e-4

    # score = teacher-forced log-likelihood over the tokens a SMILES can hold, plus the end token
    allowed = [3, *range(272, len(layout.vocab))]
    labels, lmask = pad_ids([[*r, 3] for r in ids], 0, torch.device("cpu"))
    ref_logp = torch.log_softmax(ref_logits[..., allowed].double(), -1)
    col = {t: j for j, t in enumerate(allowed)}
    expected = [sum(ref_logp[b, i, col[int(labels[b, i])]].item() for i in range(len(ids[b]) + 1))
                for b in range(len(ids))]
    got = model.score(smiles).scores
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_cached_greedy_decoding_matches_the_reference(nemo_checkpoint):
    path, layout, state = nemo_checkpoint
    model = bl.load("megamolbart", weights=path)
    smiles = ["CC(=O)Oc1ccccc1C(=O)O", "CCO", "c1ccc2[nH]ccc2c1"]
    hiddens, mask = model.encode(smiles)
    steps = 12
    got = model.decode(hiddens, mask, max_length=steps)
    allowed = torch.tensor([3, *range(272, len(layout.vocab))])
    ids = [model.tokenizer.encode(chem.canonical_smiles(s)) for s in smiles]
    for row, expected_text in zip(ids, got):
        enc = torch.tensor([row])
        dec = [2]
        for _ in range(steps):
            _, logits = reference_forward(state, layout, enc, torch.ones_like(enc, dtype=torch.bool),
                                          torch.tensor([dec]))
            nxt = int(allowed[logits[0, -1, allowed].argmax()])
            if nxt == 3:
                break
            dec.append(nxt)
        assert model.tokenizer.decode(dec) == expected_text


def test_beam_of_one_is_greedy_and_beams_are_valid_strings(nemo_checkpoint):
    path, _, _ = nemo_checkpoint
    model = bl.load("megamolbart", weights=path)
    hiddens, mask = model.encode(FEW)
    greedy = model.decode(hiddens, mask, max_length=10)
    assert model.decode(hiddens, mask, method="beam", beam_size=1, max_length=10) == greedy
    beams = model.decode(hiddens, mask, method="beam", beam_size=4, max_length=10)
    chem_chars = set("".join(SMALL_CHEM_TOKENS))
    for text in beams + greedy:
        assert set(text) <= chem_chars  # only chemistry tokens: never PAD, MASK, begin/end or reserved ones
        assert not any(special in text for special in ("<", "^", "&", "?"))


def test_nemo_round_trip_through_save_nemo_and_save_pretrained(nemo_checkpoint, tmp_path):
    path, _, _ = nemo_checkpoint
    model = bl.load("megamolbart", weights=path)
    reference = model.encode(FEW)[0]
    again = bl.load("megamolbart", weights=model.save_nemo(tmp_path / "copy.nemo"))
    exported = bl.load("megamolbart", weights=model.save_pretrained(tmp_path / "export"))
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]
    for other in (again, exported):
        assert other.network.config == model.network.config
        assert other.tokenizer.vocab == model.tokenizer.vocab
        np.testing.assert_array_equal(other.encode(FEW)[0], reference)
        np.testing.assert_array_equal(other.score(FEW).scores, model.score(FEW).scores)


def test_extracted_nemo_folder_loads(nemo_checkpoint, tmp_path):
    path, _, _ = nemo_checkpoint
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    a = bl.load("megamolbart", weights=path)
    b = bl.load("megamolbart", weights=tmp_path / "extracted")
    np.testing.assert_array_equal(a.encode(FEW)[0], b.encode(FEW)[0])


def test_missing_and_unknown_keys_are_listed(tmp_path):
    layout = NemoLayout(seed=4)
    state = random_nemo_state(layout)
    gone = "enc_dec_model.enc_dec_model.decoder.model.layers.1.inter_attention.query.bias"
    extra = "enc_dec_model.enc_dec_model.encoder.model.layers.0.self_attention.rotary_emb.inv_freq"
    del state[gone]
    state[extra] = torch.ones(4)
    path = write_nemo_archive(tmp_path / "broken.nemo", layout, state)
    with pytest.raises(CheckpointError) as err:
        bl.load("megamolbart", weights=path)
    message = str(err.value)
    assert gone in message and extra in message and "missing keys (1)" in message and "unknown keys (1)" in message


def test_misshaped_tensor_and_non_archives_are_checkpoint_errors(tmp_path):
    layout = NemoLayout(seed=5)
    state = random_nemo_state(layout)
    key = "enc_dec_model.enc_dec_model.encoder.model.layers.0.mlp.dense_4h_to_h.bias"
    state[key] = torch.zeros(7)
    with pytest.raises(CheckpointError, match="dense_4h_to_h.bias has shape"):
        bl.load("megamolbart", weights=write_nemo_archive(tmp_path / "bad.nemo", layout, state))
    junk = tmp_path / "junk.nemo"
    junk.write_bytes(b"not a tar at all")
    with pytest.raises(CheckpointError, match="not a readable .nemo archive"):
        bl.load("megamolbart", weights=junk)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a MegaMolBART checkpoint"):
        bl.load("megamolbart", weights=tmp_path / "empty")


def test_unsupported_nemo_variants_are_refused(tmp_path):
    layout = NemoLayout(flat=False, seed=6)
    state = random_nemo_state(layout)
    path = write_nemo_archive(tmp_path / "m.nemo", layout, state)
    import io

    import yaml
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    cfg = yaml.safe_load(members["./model_config.yaml"])
    cfg["encoder"]["position_embedding_type"] = "relative"
    members["./model_config.yaml"] = yaml.safe_dump(cfg).encode()
    with tarfile.open(tmp_path / "relative.nemo", "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(CheckpointError, match="position_embedding_type='relative' is not supported"):
        bl.load("megamolbart", weights=tmp_path / "relative.nemo")


# ----- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(UNPARSABLE_SMILES))
def test_unparsable_smiles_is_an_error_naming_the_record(random_model, name):
    inputs = {"aspirin": DRUG_SMILES["aspirin"], name: UNPARSABLE_SMILES[name]}
    for call in (random_model.embed, random_model.score, random_model.encode,
                 lambda x: random_model.generate(x, num_molecules=2, seed=0)):
        with pytest.raises(InvalidInputError) as err:
            call(inputs)
        assert err.value.record == name and UNPARSABLE_SMILES[name] in err.value.reason


def test_bad_records_can_be_skipped_and_reported(random_model):
    inputs = [("ok", "CCO"), ("ring", "C1CC"), ("xenon", "[Xe]"), ("also_ok", "c1ccccc1O"), ("odd", "[Og]")]
    result = random_model.embed(inputs, on_invalid="skip")
    assert result.ids == ["ok", "xenon", "also_ok"]  # [Xe] is a chemistry token of the built-in vocabulary
    assert [(e.id, e.index) for e in result.errors] == [("ring", 1), ("odd", 4)]
    assert "cannot be parsed" in result.errors[0].reason and "'[Og]'" in result.errors[1].reason
    scores = random_model.score(inputs, on_invalid="skip")
    assert scores.ids == ["ok", "xenon", "also_ok"] and len(scores.scores) == 3
    generated = random_model.generate(inputs, num_molecules=2, seed=0, on_invalid="skip", max_length=8)
    assert [r.id for r in generated.records] == ["ok", "xenon", "also_ok"]
    assert [e.id for e in generated.errors] == ["ring", "odd"]
    assert generated.to_dict()["errors"][0]["reason"].startswith("SMILES 'C1CC'")


def test_argument_errors(random_model):
    with pytest.raises(InvalidInputError, match="pooling"):
        random_model.embed("CCO", pooling="bos")
    with pytest.raises(InvalidInputError, match="layer 9 does not exist"):
        random_model.embed("CCO", layer=9)
    with pytest.raises(InvalidInputError, match="method"):
        random_model.generate("CCO", method="annealing")
    with pytest.raises(InvalidInputError, match="num_molecules"):
        random_model.generate("CCO", num_molecules=0)
    with pytest.raises(InvalidInputError, match="top_p"):
        random_model.generate("CCO", method="topkp-perturbate", top_p=1.5)
    with pytest.raises(InvalidInputError, match="score method"):
        random_model.score("CCO", method="pll")
    with pytest.raises(InvalidInputError, match="more than the model's maximum of 64"):
        random_model.embed("C" * 65)
    cut = random_model.embed({"long": "C" * 70}, on_too_long="truncate")
    assert cut.truncated == ["long"] and cut.lengths == [64]
    hiddens, mask = random_model.encode(["CCO", "CCCCO"])
    with pytest.raises(InvalidInputError, match="width 32"):
        random_model.decode(hiddens[..., :16], mask)
    with pytest.raises(InvalidInputError, match="does not match"):
        random_model.decode(hiddens, mask[:, :2])
    bad = mask.copy()
    bad[1] = False
    with pytest.raises(InvalidInputError) as err:
        random_model.decode(hiddens, bad)
    assert err.value.record == 1


# ----- embeddings ------------------------------------------------------------------------------
def test_embedding_is_the_masked_mean_of_the_hiddens(random_model):
    hiddens, mask = random_model.encode(FEW)
    assert hiddens.dtype == np.float32 and mask.dtype == bool
    assert mask.sum(1).tolist() == [len(random_model.tokenizer.encode(chem.canonical_smiles(s))) for s in FEW]
    assert not hiddens[~mask].any()  # padding is zeroed, never garbage
    emb = random_model.embed(FEW).embeddings
    manual = (hiddens * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(emb, manual, atol=1e-6)
    # upstream's mean over the padded length (torch.mean(hiddens, dim=1)) is a different, wrong vector
    padded_mean = hiddens.mean(1)
    short = int(np.argmin(mask.sum(1)))
    assert np.abs(emb[short] - padded_mean[short]).max() > 1e-3


def test_per_token_and_layer_outputs(random_model):
    result = random_model.embed(FEW[:2], layer=[0, -1], pooling="per_token")
    assert result.layers == (0, 2) and result.pooling == "per_token"
    hiddens, mask = random_model.encode(FEW[:2])
    for i, arr in enumerate(result.by_layer[2]):
        np.testing.assert_allclose(arr, hiddens[i][mask[i]], atol=1e-6)
    assert result.by_layer[0][0].shape == (mask[0].sum(), 32)
    assert result.to_dict()["dim"] == 32


def test_batched_equals_one_by_one(random_model):
    smiles = list(DRUG_SMILES.values())[:12]
    together = random_model.embed(smiles, tokens_per_batch=100)  # several length-sorted batches
    alone = np.stack([random_model.embed(s).embeddings[0] for s in smiles])
    assert together.ids == [str(i) for i in range(len(smiles))]
    np.testing.assert_allclose(together.embeddings, alone, atol=1e-5)
    batch_scores = random_model.score(smiles, tokens_per_batch=100).scores
    one_scores = [random_model.score(s).scores[0] for s in smiles]
    np.testing.assert_allclose(batch_scores, one_scores, rtol=1e-5, atol=1e-4)
    hiddens, mask = random_model.encode(smiles)
    assert random_model.decode(hiddens, mask, max_length=6, tokens_per_batch=50) == [
        random_model.decode(hiddens[i:i + 1], mask[i:i + 1], max_length=6)[0] for i in range(len(smiles))
    ]


def test_canonicalisation_makes_equivalent_smiles_equal(random_model):
    a = random_model.embed(["OC(=O)c1ccccc1OC(C)=O", "CC(=O)Oc1ccccc1C(=O)O"]).embeddings
    np.testing.assert_array_equal(a[0], a[1])
    raw = random_model.embed(["OC(=O)c1ccccc1OC(C)=O", "CC(=O)Oc1ccccc1C(=O)O"], canonicalize=False).embeddings
    assert np.abs(raw[0] - raw[1]).max() > 1e-4


def test_decode_accepts_arrays_tensors_and_ragged_lists(random_model):
    hiddens, mask = random_model.encode(FEW)
    expected = random_model.decode(hiddens, mask, max_length=6)
    assert len(expected) == len(FEW) and all(isinstance(s, str) for s in expected)
    assert random_model.decode(torch.from_numpy(hiddens), torch.from_numpy(mask), max_length=6) == expected
    assert random_model.decode([h[m] for h, m in zip(hiddens, mask)], max_length=6) == expected
    per_token = random_model.embed(FEW, pooling="per_token").embeddings
    assert random_model.decode(per_token, max_length=6) == expected


def test_chem_helpers_validate_canonicalise_and_compare():
    (rec,) = chem.prepare_smiles({"aspirin": "OC(=O)c1ccccc1OC(C)=O"})
    assert rec.id == "aspirin" and rec.sequence == chem.canonical_smiles(DRUG_SMILES["aspirin"])
    good, bad = chem.split_valid([("x", "CCO"), ("y", "C1CC"), ("z", "c1cccc1")])
    assert [r.id for r in good] == ["x"] and [r.id for r, _ in bad] == ["y", "z"]
    assert "kekulize" in bad[1][1].lower()
    with pytest.raises(InvalidInputError, match="empty SMILES"):
        chem.parse_smiles("  ", record="blank")
    aspirin, caffeine = chem.parse_smiles(DRUG_SMILES["aspirin"]), chem.parse_smiles(DRUG_SMILES["caffeine"])
    assert chem.tanimoto(aspirin, aspirin) == 1.0 and chem.tanimoto(aspirin, caffeine) < 0.5
    assert chem.tanimoto_to(aspirin, [aspirin, caffeine]) == [1.0, chem.tanimoto(aspirin, caffeine)]
    assert 0.0 < chem.qed(aspirin) < 1.0
    assert chem.logp(chem.parse_smiles("CCCCCCCC")) > chem.logp(chem.parse_smiles("OCCO"))
    props = chem.properties([aspirin, caffeine], reference=aspirin)
    assert set(props) == {"qed", "logp", "tanimoto"} and props["tanimoto"][0] == 1.0


def test_training_utility_with_masking_and_augmentation():
    from bionemo_lite.zoo.megamolbart.training import train_autoencoder

    cfg = {"hidden_size": 32, "num_layers": 1, "decoder_num_layers": 1, "ffn_hidden_size": 64,
           "num_attention_heads": 4, "max_position_embeddings": 64}
    model = MegaMolBARTModel.from_config(cfg, seed=1)
    smiles = list(DRUG_SMILES.values())[:8]
    seen = []
    report = train_autoencoder(model, smiles, steps=30, batch_size=8, lr=5e-3, warmup_steps=5, mask_prob=0.15,
                               augment_prob=0.5, seed=1, on_step=lambda step, loss: seen.append(step))
    assert report.steps == 30 and seen == list(range(1, 31)) and report.stopped == "steps"
    assert np.mean(report.losses[-5:]) < 0.7 * np.mean(report.losses[:5])
    assert not model.network.training  # left in eval mode
    quick = train_autoencoder(model, smiles, steps=30, max_seconds=0.0, target_accuracy=0.99, seed=2)
    assert quick.steps == 1 and quick.stopped == "time" and quick.accuracy is not None
    with pytest.raises(InvalidInputError) as err:
        train_autoencoder(model, ["CCO", "C1CC"], steps=1)
    assert err.value.record == 1


# ----- generate: options and resampling ---------------------------------------------------------
VOCAB = 220  # tokens the small built-in vocabulary lets decoding emit (the bound of top_k)
BAD_GENERATE_OPTIONS = [
    ({"scaled_radius": "abc"}, "scaled_radius must be a finite number in [0.0, 2.0], got 'abc'"),
    ({"scaled_radius": float("inf")}, "scaled_radius must be a finite number in [0.0, 2.0], got inf"),
    ({"scaled_radius": float("nan")}, "scaled_radius must be a finite number in [0.0, 2.0], got nan"),
    ({"scaled_radius": -0.1}, "scaled_radius must be a finite number in [0.0, 2.0], got -0.1"),
    ({"scaled_radius": 2.5}, "scaled_radius must be a finite number in [0.0, 2.0], got 2.5"),
    ({"scaled_radius": True}, "scaled_radius must be a finite number in [0.0, 2.0], got True"),
    ({"num_molecules": 0}, "num_molecules must be an integer in 1..1000, got 0"),
    ({"num_molecules": 1001}, "num_molecules must be an integer in 1..1000, got 1001"),
    ({"num_molecules": 2.5}, "num_molecules must be an integer in 1..1000, got 2.5"),
    ({"num_molecules": "10"}, "num_molecules must be an integer in 1..1000, got '10'"),
    ({"num_molecules": True}, "num_molecules must be an integer in 1..1000, got True"),
    ({"top_k": 0}, f"top_k must be an integer in 1..{VOCAB}, got 0"),
    ({"top_k": VOCAB + 1}, f"top_k must be an integer in 1..{VOCAB}, got {VOCAB + 1}"),
    ({"top_k": 1.5}, f"top_k must be an integer in 1..{VOCAB}, got 1.5"),
    ({"top_p": 0}, "top_p must be a finite number in (0.0, 1.0], got 0.0"),
    ({"top_p": 1.5}, "top_p must be a finite number in (0.0, 1.0], got 1.5"),
    ({"top_p": float("nan")}, "top_p must be a finite number in (0.0, 1.0], got nan"),
    ({"temperature": 0}, "temperature must be a finite number in [0.001, 100.0], got 0.0"),
    ({"temperature": 1e-40}, "temperature must be a finite number in [0.001, 100.0], got 1e-40"),
    ({"temperature": float("inf")}, "temperature must be a finite number in [0.001, 100.0], got inf"),
    ({"temperature": "1"}, "temperature must be a finite number in [0.001, 100.0], got '1'"),
    ({"beam_size": 0}, "beam_size must be an integer in 1..100, got 0"),
    ({"beam_size": 101}, "beam_size must be an integer in 1..100, got 101"),
    ({"beam_size": True}, "beam_size must be an integer in 1..100, got True"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
    ({"seed": "7"}, "seed must be an integer >= 0, got '7'"),
    ({"max_length": 0}, "max_length must be an integer in 1..64, got 0"),
    ({"max_length": 65}, "max_length must be an integer in 1..64, got 65"),
    ({"max_rounds": 0}, "max_rounds must be an integer in 1..20, got 0"),
    ({"max_rounds": 21}, "max_rounds must be an integer in 1..20, got 21"),
    ({"max_rounds": 2.0}, "max_rounds must be an integer in 1..20, got 2.0"),
    ({"tokens_per_batch": 0}, "tokens_per_batch must be a positive number of tokens, got 0"),
    ({"canonicalize": 0}, "canonicalize must be true or false, got 0"),
    ({"canonicalize": "false"}, "canonicalize must be true or false, got 'false'"),
    ({"method": "annealing"}, "method must be one of greedy-perturbate, topkp-perturbate, beam-search-perturbate"),
]


@pytest.mark.parametrize("options, message", BAD_GENERATE_OPTIONS, ids=[m for _, m in BAD_GENERATE_OPTIONS])
def test_generate_options_are_checked_before_any_work(random_model, options, message):
    assert len(random_model.tokenizer.allowed_output_ids()) == VOCAB
    # The seed cannot be parsed: an option error proves the options were checked first.
    with pytest.raises(InvalidInputError, match=re.escape(message)) as err:
        random_model.generate({"ring": "C1CC"}, **({"method": "topkp-perturbate"} | options))
    assert err.value.record is None


@pytest.mark.parametrize("options, message", [
    ({"beam_size": True, "method": "beam"}, "beam_size must be an integer in 1..100, got True"),
    ({"max_length": 0}, "max_length must be an integer in 1..64, got 0"),
    ({"length_penalty": float("nan")}, "length_penalty must be a finite number, got nan"),
    ({"tokens_per_batch": "many"}, "tokens_per_batch must be a positive number of tokens, got 'many'"),
])
def test_decode_options_are_checked(random_model, options, message):
    hiddens, mask = random_model.encode(["CCO"])
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        random_model.decode(hiddens, mask, **options)


def test_generate_resamples_within_its_bound_and_reports_the_shortfall(random_model):
    """Random weights decode mostly invalid strings: every record needs more rounds than one."""
    inputs = {"ethanol": "CCO", "phenol": "c1ccccc1O", "benzene": "c1ccccc1"}
    result = random_model.generate(inputs, num_molecules=3, seed=0, max_length=8, max_rounds=3)
    again = random_model.generate(inputs, num_molecules=3, seed=0, max_length=8, max_rounds=3)
    assert result.to_dict() == again.to_dict()
    for rec in result.records:
        st = rec.stats
        assert st["requested"] == 3 and 1 <= st["rounds"] <= 3
        assert 3 * (st["rounds"] - 1) < st["samples"] <= 3 * st["rounds"]
        assert st["valid"] + st["invalid"] == st["samples"] and st["unique"] + st["duplicates"] == st["valid"]
        assert st["unique"] == len(rec.generated) <= 3 and st["shortfall"] == 3 - st["unique"]
        if st["shortfall"]:
            assert (st["rounds"], st["samples"]) == (3, 9)  # the whole budget was spent
    assert any(r.stats["rounds"] > 1 for r in result.records)
    single = random_model.generate(inputs, num_molecules=3, seed=0, max_length=8, max_rounds=1)
    for one, many in zip(single.records, result.records, strict=True):
        assert one.stats["rounds"] == 1 and one.stats["samples"] == 3
        assert set(one.generated) <= set(many.generated)  # round 1 is the same draw


def test_generate_without_noise_decodes_once(random_model):
    """Greedy and beam decoding of unperturbed hiddens repeat one string: more rounds cannot add any."""
    for method in ("greedy-perturbate", "beam-search-perturbate"):
        result = random_model.generate(["CCO"], num_molecules=4, scaled_radius=0.0, method=method, beam_size=2,
                                       seed=0, max_length=8)
        (rec,) = result.records
        assert rec.stats["rounds"] == 1 and rec.stats["samples"] == 4 and len(rec.generated) <= 1
        assert rec.stats["shortfall"] == 4 - len(rec.generated)


# ----- damaged and malicious checkpoints ---------------------------------------------------------
@pytest.fixture(scope="module")
def good_nemo(tmp_path_factory):
    layout = NemoLayout(seed=7)
    return write_nemo_archive(tmp_path_factory.mktemp("good") / "good.nemo", layout, random_nemo_state(layout))


def _repack(source, target, member: str, data: bytes, gzip: bool = False):
    import io

    with tarfile.open(source) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    members[f"./{member}"] = data
    with tarfile.open(target, "w:gz" if gzip else "w") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return target


@pytest.mark.parametrize("gzip", [False, True], ids=["tar", "tar.gz"])
@pytest.mark.parametrize("kind", DAMAGES)
def test_damaged_weights_inside_a_nemo_name_the_nemo_not_a_temporary_file(good_nemo, tmp_path, kind, gzip):
    with tarfile.open(good_nemo) as tar:
        weights = tar.extractfile("./model_weights.ckpt").read()
    scratch = tmp_path / "model_weights.ckpt"
    scratch.write_bytes(weights)
    damage(scratch, kind, tmp_path / "code-ran")
    nemo = _repack(good_nemo, tmp_path / "damaged.nemo", "model_weights.ckpt", scratch.read_bytes(), gzip)
    error = assert_refused(lambda: bl.load("megamolbart", weights=nemo), f"{nemo}: model_weights.ckpt",
                           tmp_path / "code-ran")
    assert str(error).count(".ckpt") == str(error).count("model_weights.ckpt")  # no temporary file of ours


@pytest.mark.parametrize("gzip", [False, True], ids=["tar", "tar.gz"])
@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_nemo_file_is_a_checkpoint_error_naming_it(good_nemo, tmp_path, kind, gzip):
    with tarfile.open(good_nemo) as tar:
        weights = tar.extractfile("./model_weights.ckpt").read()
    nemo = _repack(good_nemo, tmp_path / "damaged.nemo", "model_weights.ckpt", weights, gzip)
    damage(nemo, kind, tmp_path / "code-ran")
    assert_refused(lambda: bl.load("megamolbart", weights=nemo), nemo, tmp_path / "code-ran")


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_export_is_a_checkpoint_error_naming_the_weights(random_model, tmp_path, kind):
    folder = random_model.save_pretrained(tmp_path / "export")
    damaged = damage(folder / "model.safetensors", kind, tmp_path / "code-ran")
    assert_refused(lambda: bl.load("megamolbart", weights=folder), damaged, tmp_path / "code-ran")
