"""The compute budget of one request (`server/budget.py`): each verb's cost rule, and over real
HTTP the 422 that names the cost, the budget, its setting and the batch command."""

from __future__ import annotations

import time

import httpx
import pytest

from bionemo_lite.errors import OverBudgetError
from bionemo_lite.registry import get_spec
from bionemo_lite.server.budget import (
    FOLD_SETTING,
    TOKEN_SETTING,
    check_budget,
    contacts_cost,
    embed_cost,
    fold_cost,
    generate_cost,
    score_cost,
)
from bionemo_lite.server.schemas import ContactsRequest, EmbedRequest, FoldRequest, GenerateRequest, ScoreRequest
from bionemo_lite.server.settings import Settings
from server_fixtures import cli_serve, running_server

ESM2 = "esm2_t6_8M_UR50D"
L1022 = "MKTAYIAKQR" * 102 + "MK"


@pytest.fixture()
def esm2():
    return get_spec(ESM2)


def test_pll_costs_the_sum_of_squared_lengths(esm2):
    cost = score_cost(esm2, ScoreRequest.model_validate({"sequences": [L1022] * 32, "method": "pll"}))
    assert (cost.amount, cost.unit) == (32 * 1022**2, "token-passes")
    assert score_cost(esm2, ScoreRequest.model_validate({"sequences": ["MKTA", "MK"]})).amount == 16 + 4  # default: pll


def test_marginals_cost_one_pass_per_mutated_position(esm2):
    body = {"sequences": ["MKTAYIAKQR"], "method": "masked_marginals", "mutations": ["K2A", "T3G:A4C", "K2R"]}
    assert score_cost(esm2, ScoreRequest.model_validate(body)).amount == 10 * 3
    body["method"] = "wt_marginals"
    assert score_cost(esm2, ScoreRequest.model_validate(body)).amount == 10


def test_truncated_records_cost_the_model_maximum(esm2):
    body = ScoreRequest.model_validate({"sequences": ["A" * 2000], "truncate": True})
    assert score_cost(esm2, body).amount == esm2.max_length**2


def test_fold_costs_cubed_length_times_trunk_passes():
    spec = get_spec("esmfold_v1")
    assert fold_cost(spec, FoldRequest.model_validate({"sequence": L1022, "num_recycles": 64})).amount == 1022**3 * 65
    assert fold_cost(spec, FoldRequest.model_validate({"sequence": "MKTA:GSH"})).amount == 7**3 * 4  # default passes


def test_generate_costs_samples_times_passes(esm2):
    body = GenerateRequest.model_validate({"sequences": ["MK<mask>A<mask>"], "num_samples": 3})
    # 5 residues; 2 fills + 5 PLL passes per sample, each over 5 tokens
    assert generate_cost(esm2, body).amount == 3 * (2 + 5) * 5


def test_embed_costs_one_pass(esm2):
    assert embed_cost(esm2, EmbedRequest.model_validate({"sequences": ["MKT", "GS"]})).amount == 5
    assert embed_cost(esm2, EmbedRequest.model_validate({"sequences": ["MKT"], "include_hiddens": True})).amount == 6


def test_contacts_cost_one_pass_and_name_their_batch_command(esm2):
    cost = contacts_cost(esm2, ContactsRequest.model_validate({"sequences": ["MKT", "GS"]}))
    assert (cost.verb, cost.amount, cost.unit) == ("contacts", 5, "token-passes")
    assert cost.batch_command == f"bionemo-lite contacts {ESM2} sequences.fasta -o contacts.h5"
    with pytest.raises(OverBudgetError, match="contacts"):
        check_budget(cost, Settings(max_token_passes=4))


def test_defaults_let_normal_requests_through_and_refuse_the_reported_cases(esm2):
    settings = Settings()
    check_budget(score_cost(esm2, ScoreRequest.model_validate({"sequences": ["A" * 300] * 32})), settings)
    check_budget(fold_cost(get_spec("esmfold_v1"), FoldRequest.model_validate({"sequence": L1022})), settings)
    with pytest.raises(OverBudgetError) as pll:
        check_budget(score_cost(esm2, ScoreRequest.model_validate({"sequences": [L1022] * 32})), settings)
    assert pll.value.setting == TOKEN_SETTING and pll.value.budget == settings.max_token_passes
    with pytest.raises(OverBudgetError) as fold:
        check_budget(fold_cost(get_spec("esmfold_v1"),
                               FoldRequest.model_validate({"sequence": L1022, "num_recycles": 64})), settings)
    assert fold.value.setting == FOLD_SETTING
    assert fold.value.batch_command == "bionemo-lite fold esmfold_v1 sequences.fasta -o structures/ --num-recycles 64"


def test_the_budget_is_a_setting(esm2, monkeypatch):
    monkeypatch.setenv("BIONEMO_LITE_MAX_TOKEN_PASSES", "10")
    body = ScoreRequest.model_validate({"sequences": ["MKTA"]})
    with pytest.raises(OverBudgetError, match="16 token-passes, over the budget of 10"):
        check_budget(score_cost(esm2, body), Settings())


# ---------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def server(tmp_path_factory, esm2_fair_checkpoint):
    folder = tmp_path_factory.mktemp("budget")
    env = {"BIONEMO_LITE_HOME": str(folder / "cache"), "BIONEMO_LITE_TORCH_THREADS": "1",
           "BIONEMO_LITE_LOG_LEVEL": "warning"}
    serve = cli_serve("--weights", f"{ESM2}={esm2_fair_checkpoint}", "--preload", ESM2)
    with running_server(serve, env, folder) as srv:
        assert srv.wait_ready().status_code == 200
        yield srv


def test_pll_of_32_long_records_is_refused_and_the_next_request_answers(client):
    started = time.monotonic()
    r = client.post(f"/v1/models/{ESM2}/score", json={"sequences": [L1022] * 32, "method": "pll"})
    assert r.status_code == 422, r.text
    assert time.monotonic() - started < 5
    body = r.json()
    assert body["error"] == "over_budget" and body["request_id"] == r.headers["x-request-id"]
    assert (body["verb"], body["cost"], body["budget"]) == ("score", 32 * 1022**2, 4_000_000)
    assert body["unit"] == "token-passes" and body["setting"] == "BIONEMO_LITE_MAX_TOKEN_PASSES"
    assert body["batch_command"] == f"bionemo-lite score {ESM2} sequences.fasta -o scores.parquet --method pll"
    assert "33,423,488" in body["detail"] and body["batch_command"] in body["detail"]
    started = time.monotonic()
    ok = client.post(f"/v1/models/{ESM2}/score", json={"sequences": ["MKTAYIAKQR"], "method": "pll"})
    assert ok.status_code == 200, ok.text
    assert time.monotonic() - started < 5


def test_long_fold_with_64_recycles_is_refused_before_loading(client):
    r = client.post("/v1/models/esmfold_v1/fold", json={"sequence": L1022, "num_recycles": 64})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "over_budget" and body["cost"] == 1022**3 * 65
    assert body["setting"] == "BIONEMO_LITE_MAX_FOLD_WORK" and "--num-recycles 64" in body["batch_command"]
    # Within the budget the request goes on to the model (whose weights this server lacks).
    small = client.post("/v1/models/esmfold_v1/fold", json={"sequence": "MKTAYIAKQR", "num_recycles": 3})
    assert small.status_code == 503 and small.json()["error"] == "weights_not_found"


def test_generate_over_budget_is_refused(client):
    r = client.post(f"/v1/models/{ESM2}/generate", json={"sequences": ["<mask>" * 1000], "num_samples": 100})
    assert r.status_code == 422 and r.json()["error"] == "over_budget", r.text
    assert r.json()["batch_command"].startswith(f"bionemo-lite generate {ESM2} ")


def test_bad_records_are_named_before_the_budget(client):
    r = client.post(f"/v1/models/{ESM2}/score", json={"sequences": ["MKJ" + L1022[3:]] * 32})
    assert r.status_code == 422 and r.json()["error"] == "invalid_input", r.text
