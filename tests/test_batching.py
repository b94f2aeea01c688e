"""Token-budget batching and out-of-memory recovery (the real functions, driven by
a computation that runs out of memory above a batch size, as a GPU would)."""

import pytest
import torch

from bionemo_lite.batching import is_out_of_memory, run_batches, token_budget_batches


def test_batches_are_length_sorted_and_within_budget():
    lengths = [50, 3, 20, 7, 100, 8, 9]
    batches = token_budget_batches(lengths, tokens_per_batch=64, extra_tokens=2)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)
    for b in batches:
        if len(b) > 1:
            assert len(b) * (max(lengths[i] for i in b) + 2) <= 64
    assert [100] in [[lengths[i] for i in b] for b in batches]  # over-budget record alone


def test_max_batch_size_caps_records():
    batches = token_budget_batches([1] * 10, tokens_per_batch=10_000, max_batch_size=4)
    assert [len(b) for b in batches] == [4, 4, 2]


def test_invalid_budget():
    with pytest.raises(ValueError):
        token_budget_batches([1], tokens_per_batch=0)


def _square_unless_too_big(limit: int, calls: list):
    def run(batch):
        calls.append(list(batch))
        if len(batch) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {i: i * i for i in batch}

    return run


def test_oom_batches_are_split_until_they_fit():
    calls: list = []
    results, failures = run_batches([[0, 1, 2, 3, 4, 5, 6]], _square_unless_too_big(2, calls))
    assert results == {i: i * i for i in range(7)}
    assert failures == {}
    assert calls[0] == [0, 1, 2, 3, 4, 5, 6] and all(len(c) <= 7 for c in calls)


def test_record_that_never_fits_fails_alone():
    def run(batch):
        if 3 in batch:
            raise RuntimeError("CUDA error: out of memory")
        return {i: -i for i in batch}

    results, failures = run_batches([[0, 1, 2, 3, 4]], run)
    assert results == {0: 0, 1: -1, 2: -2, 4: -4}
    assert list(failures) == [3] and "out of memory" in failures[3]


def test_other_errors_propagate():
    def run(batch):
        raise ValueError("shape mismatch")

    with pytest.raises(ValueError):
        run_batches([[0]], run)
    assert not is_out_of_memory(ValueError("x"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory"))


def test_prepare_runs_one_batch_ahead_in_another_thread():
    import threading

    prepared_in: dict[tuple, str] = {}
    order: list = []

    def prepare(batch):
        prepared_in[tuple(batch)] = threading.current_thread().name
        order.append(("prepare", tuple(batch)))
        return [i * 10 for i in batch]

    def run(batch, inputs):
        assert inputs == [i * 10 for i in batch]  # the inputs of this batch, not of another
        order.append(("run", tuple(batch)))
        return {i: x + 1 for i, x in zip(batch, inputs)}

    batches = [[0, 1], [2], [3, 4, 5], [6]]
    results, failures = run_batches(batches, run, prepare=prepare)
    assert results == {i: i * 10 + 1 for i in range(7)} and failures == {}
    main = threading.current_thread().name
    assert prepared_in[(0, 1)] == main  # the first has nothing to overlap with
    assert all(prepared_in[tuple(b)].startswith("bionemo-lite-prefetch") for b in batches[1:])
    # every batch but the last starts its successor's preparation before it runs
    for b, nxt in zip(batches, batches[1:]):
        assert order.index(("prepare", tuple(nxt))) < order.index(("run", tuple(nxt)))
    assert len(prepared_in) == len(batches)  # each prepared once


def test_prepare_with_out_of_memory_splits_prepares_the_halves():
    calls: list = []
    square = _square_unless_too_big(2, calls)
    results, failures = run_batches([[0, 1, 2, 3, 4], [5]], lambda b, inputs: square(b), prepare=lambda b: list(b))
    assert results == {i: i * i for i in range(6)} and failures == {}
    assert calls[0] == [0, 1, 2, 3, 4] and [5] in calls


def test_an_error_while_preparing_ahead_reaches_the_caller():
    def prepare(batch):
        if 2 in batch:
            raise ValueError("record 2: bad residue")
        return batch

    with pytest.raises(ValueError, match="record 2"):
        run_batches([[0], [1], [2]], lambda b, inputs: {i: i for i in b}, prepare=prepare)
