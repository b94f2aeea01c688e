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
