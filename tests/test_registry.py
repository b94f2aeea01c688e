"""The registry, and the same checks for every registered variant (timm-style)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bionemo_lite as bl
from bionemo_lite import InvalidInputError, ModelSpec, UnknownModelError, get_spec
from bionemo_lite.registry import import_string, plugin_errors
from bionemo_lite.spec import CORE_VERBS

FAMILY_EXTRA_VERBS = {"decode", "contacts"}
ALL_SPECS = bl.list_models()


def test_builtin_plugins_load_without_errors():
    assert plugin_errors == {}
    assert {s.family for s in ALL_SPECS} >= {"esm2"}


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_every_variant_has_a_complete_card(spec: ModelSpec):
    assert spec.verbs and spec.verbs <= set(CORE_VERBS) | FAMILY_EXTRA_VERBS
    assert spec.max_length > 0 and spec.license and spec.license != "unknown"
    assert spec.input_kind in ("protein", "smiles")
    assert callable(import_string(spec.loader))
    assert spec.config, "published architecture is part of the card"
    for source in spec.weights:
        assert source.files and source.format
        names = {f.filename for f in source.files}
        assert source.entry is None or source.entry in names
        for f in source.files:
            assert f.url.startswith("https://"), f.url
    json.dumps(spec.to_dict())  # JSON-ready for /v1/models


def test_names_are_unique_and_verb_filter_works():
    names = [s.name for s in ALL_SPECS]
    assert len(names) == len(set(names))
    for verb in CORE_VERBS:
        assert all(verb in s.verbs for s in bl.list_models(verb=verb))
    assert all(s.name.startswith("esm2_") for s in bl.list_models(pattern="esm2_*"))


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError) as err:
        bl.get_spec("esm2_t6_8M_UR50")
    assert "esm2_t6_8M_UR50D" in err.value.close_matches
    assert "did you mean esm2_t6_8M_UR50D" in str(err.value)


def test_duplicate_registration_refused_identical_is_idempotent():
    spec = ModelSpec(name="dup_probe", family="probe", verbs={"embed"}, loader="builtins:print", license="MIT")
    bl.register(spec)
    bl.register(spec)
    other = ModelSpec(name="dup_probe", family="other", verbs={"embed"}, loader="builtins:print")
    try:
        with pytest.raises(ValueError, match="already registered"):
            bl.register(other)
    finally:
        bl.registry.unregister("dup_probe")


def test_listing_models_does_not_import_torch():
    code = "import sys, bionemo_lite as bl; bl.list_models(); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_third_party_plugin_via_entry_point_and_broken_plugin_skipped(tmp_path: Path):
    """A separate package adds a model with one entry-point line; a broken one is skipped."""
    site = tmp_path / "site"
    pkg = site / "acme_models"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from bionemo_lite import ModelSpec
        def specs():
            return [ModelSpec(name="acme_small", family="acme", verbs={"embed"}, loader="acme_models:load", license="MIT")]
        def load(spec, path, **kw):
            raise NotImplementedError
    """))
    dist = site / "acme_models-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-models\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[bionemo_lite.models]\nacme = acme_models:specs\nbroken = acme_models_missing:specs\n"
    )
    code = (
        "import bionemo_lite as bl; from bionemo_lite.registry import plugin_errors;"
        "print(bl.get_spec('acme_small').family, sorted(plugin_errors), len(bl.list_models(pattern='esm2_*')) > 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["acme", "['broken']", "True"]
    assert "failed to load and was skipped" in out.stderr

    env["BIONEMO_LITE_NO_PLUGINS"] = "1"
    code = "import bionemo_lite as bl; print(len(bl.list_models()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "0"


def test_score_methods_are_declared_by_the_spec_first_is_the_default():
    esm2, mmb = get_spec("esm2_t6_8M_UR50D"), get_spec("megamolbart")
    assert esm2.score_method() == "pll" and esm2.score_method("wt_marginals") == "wt_marginals"
    assert mmb.score_methods == ("loglik", "loglik_per_token") and mmb.to_dict()["score_methods"][0] == "loglik"
    with pytest.raises(InvalidInputError, match="score method must be one of pll, masked_marginals, wt_marginals"):
        esm2.score_method("loglik")
