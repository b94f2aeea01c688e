"""A fuzzed SMILES corpus through the parser: every string parses or is one record's `InvalidInputError`.

Mutations of real drug SMILES, very long chains, deep branch nesting, ring-closure digits
(``%99``), bracket atoms, junk bytes and unicode go through the worker parser that the doors
use. A crash or a timeout would come back as that record's error ("RDKit crashed/timed out"),
so the property also demands that none does: the text bounds alone keep RDKit safe, and the
worker is only the second line.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.smiles_guard import SmilesParser
from bionemo_lite.smiles_text import MAX_SMILES_CHARACTERS, check_smiles_text

REAL = [
    "CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC(=O)Nc1c(C)cccc1C", "COc1cc(C=O)ccc1O", "C[C@H](N)C(=O)O",
    "c1ccc2c(c1)[nH]c1ccccc12", "O=C(O)C[C@H](O)C[C@H](O)CCn1c(C(C)C)c(C(=O)Nc2ccccc2)c(c1)-c1ccc(F)cc1",
    "Cc1ncc([N+](=O)[O-])n1CCO", "C1CC2(CCC1)OCCO2", "[Na+].[Cl-]", "FC(F)(F)c1ccc(Oc2ccccc2)cc1",
    "N#Cc1ccccc1/C=C/C(=O)O", "C=C\\C=C/C", "[2H]C([2H])([2H])O", "C1=CC=CC=C1", "c1ccsc1", "B(O)(O)c1ccccc1",
    "O=S(=O)(N)c1ccc(Cl)cc1", "CC12CCC3C(CCC4=CC(=O)CCC34C)C1CCC2O",
]
SMILES_ALPHABET = "CNOSPFIBrlcnospb()[]=#$:/\\.+-@%*0123456789H"
JUNK = st.sampled_from(list(SMILES_ALPHABET) + [" ", "\t", "\n", "\x00", "\x7f", "~", ">", "?", "é", "☃", "𝔠", "\u200b"])


@st.composite
def mutated(draw) -> str:
    """A real SMILES after a few random inserts, deletions, duplications and cuts."""
    text = draw(st.sampled_from(REAL))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "duplicate", "cut"]))
        if edit == "insert":
            text = text[:pos] + draw(JUNK) + text[pos:]
        elif edit == "delete":
            text = text[:pos] + text[pos + 1 :]
        elif edit == "duplicate":
            end = draw(st.integers(pos, len(text)))
            text = text[:end] + text[pos:end] * draw(st.integers(1, 30)) + text[end:]
        else:
            text = text[:pos]
    return text


LONG_CHAINS = st.integers(1, 6000).map(lambda n: "C" * n)
DEEP_BRANCHES = st.integers(1, 2000).map(lambda d: "C(" * d + "C" + ")" * d)
UNBALANCED = st.integers(1, 5000).map(lambda d: "C" + "(" * d)
RING_CLOSURES = st.lists(st.sampled_from(["C%99", "C%10", "C1", "c1", "C%", "%99", "C9", "C%0"]), min_size=1,
                         max_size=400).map("".join)
BRACKETS = st.text(alphabet=SMILES_ALPHABET + "[]", max_size=40).map(lambda t: f"[{t}]")
JUNK_BYTES = st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
CORPUS = st.one_of(mutated(), LONG_CHAINS, DEEP_BRANCHES, UNBALANCED, RING_CLOSURES, BRACKETS, JUNK_BYTES,
                   st.text(max_size=200), st.sampled_from(REAL))


@pytest.fixture(scope="module")
def parser():
    p = SmilesParser("worker")
    yield p
    p.close()


@settings(max_examples=400, deadline=None)
@given(CORPUS)
def test_the_text_checks_pass_or_refuse_every_string(text):
    try:
        checked = check_smiles_text(text, "fuzz", max_tokens=512)
    except InvalidInputError as exc:
        assert exc.record == "fuzz" and exc.reason
        return
    assert checked == text.strip() and 0 < len(checked) <= MAX_SMILES_CHARACTERS


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(st.lists(CORPUS, min_size=1, max_size=8))
def test_every_fuzzed_smiles_parses_or_fails_alone(parser, texts):
    ids = [f"r{i}" for i in range(len(texts))]
    outcomes = parser.parse(texts, ids)
    assert len(outcomes) == len(texts)
    for rid, outcome in zip(ids, outcomes):
        if isinstance(outcome, str):
            assert outcome  # a canonical SMILES
            continue
        assert isinstance(outcome, InvalidInputError) and outcome.record == rid
        assert "crashed" not in outcome.reason and "timed out" not in outcome.reason, outcome.reason
