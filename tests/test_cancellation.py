"""Cancellation: a token per model call, checked at batch boundaries; over real HTTP, a client
that goes away (or a request past its deadline) frees its model within seconds.

The HTTP tests use the toy encoder's ``"slow"`` score (one `$TOY_STEP_S` step per residue
through the core's `run_batches`, logged to ``steps.log``) and tiny ESM-2 PLL.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bionemo_lite.batching import run_batches
from bionemo_lite.cancellation import CancelToken, installed, raise_if_cancelled, run_with_token
from bionemo_lite.errors import RequestCancelledError
from bionemo_lite.server.settings import Settings
from server_fixtures import ServerProcess, cli_serve, running_server, slow_toy_env, uvicorn_factory

LONG = ["ACDEFGHIKLMNPQRSTVWY" * 2] * 32  # 1,280 slow steps: 64 s at 0.05 s a step
SCORE = "/v1/models/toy_encoder/score"
FREED_WITHIN_S = 5.0


# ---------------------------------------------------------------- the core


def test_without_a_token_nothing_is_cancelled():
    raise_if_cancelled()  # no token installed: the Python API and the CLI never stop
    results, failures = run_batches([[0], [1], [2]], lambda batch: {i: i for i in batch})
    assert results == {0: 0, 1: 1, 2: 2} and failures == {}


def test_run_batches_stops_at_the_next_batch_boundary():
    token = CancelToken()
    ran: list[int] = []

    def run(batch: list[int]) -> dict[int, int]:
        ran.extend(batch)
        if batch == [1]:
            token.cancel("client disconnected")  # from inside batch 1: batch 2 must not start
        return {i: i for i in batch}

    with installed(token), pytest.raises(RequestCancelledError, match="client disconnected"):
        run_batches([[0], [1], [2], [3]], run)
    assert ran == [0, 1]


def test_a_token_is_the_calling_threads_own():
    token = CancelToken()
    token.cancel("gone")
    seen: list[BaseException | None] = []

    def other_thread() -> None:
        try:
            raise_if_cancelled()
            seen.append(None)
        except RequestCancelledError as exc:
            seen.append(exc)

    with installed(token):
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        with pytest.raises(RequestCancelledError):
            raise_if_cancelled()
    raise_if_cancelled()  # uninstalled again after the block
    assert seen == [None]


def test_a_call_cancelled_before_it_starts_never_runs():
    calls: list[int] = []
    assert run_with_token(CancelToken(), lambda: calls.append(1) or "ran") == "ran"
    token = CancelToken()
    token.cancel("client disconnected while queued")
    with pytest.raises(RequestCancelledError, match="while queued"):
        run_with_token(token, lambda: calls.append(2))
    assert calls == [1]


def test_cancelled_token_keeps_its_first_reason():
    token = CancelToken()
    token.cancel("deadline")
    token.cancel("shutdown")
    with pytest.raises(RequestCancelledError, match="deadline"):
        token.raise_if_cancelled()


def test_esm2_pll_stops_when_cancelled(fair_model, one_torch_thread):
    token = CancelToken()
    token.cancel("gone")
    with installed(token), pytest.raises(RequestCancelledError):
        fair_model.score(["MKTAYIAKQRQISFVKSHFSRQ"], method="pll")
    assert fair_model.score(["MKTAYIAKQR"], method="pll").scores.shape == (1,)  # the model is fine after


@pytest.mark.slow  # ~20-40 s: transformers and a tiny ESMFold
def test_esmfold_recycling_stops_between_trunk_blocks(tmp_path):
    """transformers' recycling loop is not ours: the check sits before each trunk block."""
    import warnings

    import bionemo_lite
    from bionemo_lite.zoo.esmfold.testing import write_tiny_esmfold_dir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bionemo_lite.load("esmfold_v1", weights=write_tiny_esmfold_dir(tmp_path / "esmfold"))
    token = CancelToken()
    first_block_calls: list[int] = []

    def cancel_in_the_second_pass(module, args, output) -> None:
        first_block_calls.append(1)
        if len(first_block_calls) == 2:
            token.cancel("client disconnected")

    hook = model.network.trunk.blocks[0].register_forward_hook(cancel_in_the_second_pass)
    try:
        with installed(token), pytest.raises(RequestCancelledError):
            model.fold("MKTAYIAKQRQISF", num_recycles=3)  # 4 passes
        assert len(first_block_calls) == 2
    finally:
        hook.remove()
    assert model.fold("MKTAYIAKQR", num_recycles=0).sequence == "MKTAYIAKQR"  # no token: runs


def test_triton_provider_stops_waiting_and_its_call_stops():
    """A cancelled request stops waiting for Triton at once; its worker thread stops at the next batch."""
    from bionemo_lite.server.backends.triton import TritonProvider

    provider = TritonProvider(Settings(backend="triton", triton_url="127.0.0.1:1"))
    steps: list[int] = []

    def step(batch: list[int]) -> dict[int, None]:
        time.sleep(0.01)
        steps.extend(batch)
        return dict.fromkeys(batch)

    def job(remote_model) -> None:  # a call of many batches, as a verb's call on a RemoteModel is
        run_batches([[i] for i in range(2000)], step)

    async def cancel_while_running() -> float:
        call = asyncio.ensure_future(provider.run("esm2_t6_8M_UR50D", "embed", job))
        while not steps:  # until it runs (the first call imports tritonclient)
            await asyncio.sleep(0.05)
        cancelled = time.monotonic()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return time.monotonic() - cancelled

    try:
        assert asyncio.run(cancel_while_running()) < 0.5
        time.sleep(0.2)
        stopped = len(steps)
        time.sleep(0.3)
        assert 0 < len(steps) == stopped < 2000
    finally:
        asyncio.run(provider.close())


def test_a_merged_embed_call_stops_only_when_all_its_requests_left():
    from bionemo_lite.records import Record
    from bionemo_lite.server.backends.batcher import EmbedBatcher

    steps: list[int] = []

    def step(batch: list[int]) -> dict[int, None]:
        time.sleep(0.005)
        steps.extend(batch)
        return dict.fromkeys(batch)

    def runner(model, requests):  # the group's model call (worker thread): many batches
        run_batches([[i] for i in range(200)], step)
        return [len(records) for records in requests], 1

    async def run_model(job, on_turn, token):  # what the pool does: the job under the group's token
        on_turn()
        return await asyncio.to_thread(run_with_token, token, lambda: job(None))

    async def scenario() -> None:
        batcher = EmbedBatcher(window_s=0.05, max_records=100)
        one, two = [Record("a", "MKT", 0)], [Record("b", "GS", 0), Record("c", "W", 1)]
        left = asyncio.ensure_future(batcher.submit("toy", "key", one, runner, run_model))
        stays = asyncio.ensure_future(batcher.submit("toy", "key", two, runner, run_model))
        while not steps:
            await asyncio.sleep(0.01)
        left.cancel()  # its neighbour still waits: the call goes on
        assert await stays == 2 and len(steps) == 200
        steps.clear()
        alone = asyncio.ensure_future(batcher.submit("toy", "key", one, runner, run_model))
        while not steps:
            await asyncio.sleep(0.01)
        alone.cancel()  # nobody waits any more: the call stops at its next batch
        with pytest.raises(asyncio.CancelledError):
            await alone
        await asyncio.sleep(0.2)

    asyncio.run(scenario())
    assert 0 < len(steps) < 200


# ---------------------------------------------------------------- over HTTP


def _steps(folder: Path) -> int:
    path = folder / "steps.log"
    return len(path.read_text()) if path.exists() else 0


def _drop_after(base_url: str, body: dict, seconds: float) -> None:
    """POST and hang up after `seconds` (the client gives up: the connection is closed)."""
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(base_url + SCORE, json=body, timeout=seconds)


def _in_background(fn, *args) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("cancel")
    with running_server(uvicorn_factory("server_fixtures:toy_app"), slow_toy_env(folder), folder) as srv:
        assert srv.wait_ready().status_code == 200
        srv.folder = folder  # type: ignore[attr-defined]
        yield srv


def _short_score(base_url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = httpx.post(base_url + SCORE, json={"sequences": ["MKT"]}, timeout=30)
    return r, time.monotonic() - started


def test_disconnect_frees_the_model_within_seconds(toy_server):
    _drop_after(toy_server.base_url, {"sequences": LONG, "method": "slow"}, 1.5)
    dropped = time.monotonic()
    steps_at_drop = _steps(toy_server.folder)
    assert steps_at_drop > 0  # it really was running
    r, _ = _short_score(toy_server.base_url)
    freed = time.monotonic() - dropped
    print(f"\nmodel free {freed:.2f} s after the client disconnected ({steps_at_drop} of {len(LONG) * 40} steps ran)")
    assert r.status_code == 200, r.text
    assert freed < FREED_WITHIN_S
    stopped = _steps(toy_server.folder)
    time.sleep(0.5)
    assert _steps(toy_server.folder) == stopped < len(LONG) * 40  # the work stopped, not only the wait


def test_a_queued_request_whose_client_left_never_starts(toy_server):
    first = _in_background(_drop_after, toy_server.base_url, {"sequences": LONG, "method": "slow"}, 3.0)
    time.sleep(1.0)  # the first holds the model; the second queues behind it
    _drop_after(toy_server.base_url, {"sequences": LONG, "method": "slow"}, 0.5)
    first.join()
    dropped = time.monotonic()
    # Had the queued one started once the first stopped, it would hold the model for a minute.
    r, _ = _short_score(toy_server.base_url)
    assert r.status_code == 200, r.text
    assert time.monotonic() - dropped < FREED_WITHIN_S


def test_health_answers_while_a_model_works(toy_server):
    worker = _in_background(_drop_after, toy_server.base_url, {"sequences": LONG, "method": "slow"}, 2.0)
    time.sleep(0.5)
    assert httpx.get(toy_server.base_url + "/v1/health/live", timeout=2).status_code == 200
    worker.join()


def test_deadline_answers_504_and_frees_the_model(tmp_path):
    env = slow_toy_env(tmp_path, BIONEMO_LITE_REQUEST_TIMEOUT_S="1.5")
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp_path) as srv:
        assert srv.wait_ready().status_code == 200
        started = time.monotonic()
        r = httpx.post(srv.base_url + SCORE, json={"sequences": LONG, "method": "slow"}, timeout=60)
        answered = time.monotonic() - started
        assert r.status_code == 504, r.text
        body = r.json()
        assert body["error"] == "deadline_exceeded" and body["setting"] == "BIONEMO_LITE_REQUEST_TIMEOUT_S"
        assert body["timeout_s"] == 1.5 and body["request_id"] == r.headers["x-request-id"]
        assert "1.5 s" in body["detail"] and "bionemo-lite score toy_encoder" in body["detail"]
        assert 1.5 <= answered < 1.5 + 3
        short, took = _short_score(srv.base_url)
        assert short.status_code == 200 and took < FREED_WITHIN_S


@pytest.mark.slow  # ~15 s: a server with tiny ESM-2, loaded at start-up
def test_esm2_pll_disconnect_frees_the_model(tmp_path, esm2_fair_checkpoint):
    """32 x 1,022-residue PLL (33 M residue-passes, budget raised so it runs), dropped after 2 s."""
    env = {"BIONEMO_LITE_HOME": str(tmp_path / "cache"), "BIONEMO_LITE_TORCH_THREADS": "1",
           "BIONEMO_LITE_LOG_LEVEL": "warning", "BIONEMO_LITE_MAX_TOKEN_PASSES": str(10**9)}
    name = "esm2_t6_8M_UR50D"
    serve = cli_serve("--weights", f"{name}={esm2_fair_checkpoint}", "--preload", name)
    with running_server(serve, env, tmp_path) as srv:
        assert srv.wait_ready().status_code == 200
        url = f"{srv.base_url}/v1/models/{name}/score"
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json={"sequences": ["MKTAYIAKQR" * 102 + "MK"] * 32, "method": "pll"}, timeout=2.0)
        dropped = time.monotonic()
        r = httpx.post(url, json={"sequences": ["MKTAYIAKQR"], "method": "pll"}, timeout=30)
        freed = time.monotonic() - dropped
        print(f"\nESM-2 free {freed:.2f} s after the client of a 32 x 1022 PLL disconnected")
        assert r.status_code == 200, r.text
        assert freed < FREED_WITHIN_S
