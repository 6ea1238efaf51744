"""The sampler of :mod:`mdllm.sampling` in plain numpy (same algorithm and random numbers); the
tests compare the two and the benchmark measures both."""

from __future__ import annotations

import numpy as np

from mdllm.sampling import SamplingParams

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def counter_uniform(seed: int, walker: int, step: int) -> float:
    h = _splitmix64(_splitmix64(_splitmix64(seed) ^ walker) ^ step)
    return (h >> 11) * 2.0**-53


def log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def sample_row(row, begin: int, end: int, params: SamplingParams, u: float) -> int:
    ids = np.arange(begin, end)
    logits = np.asarray(row[begin:end], np.float64)
    order = np.lexsort((ids, -logits))  # most likely first, ties by lower id
    ids, logits = ids[order], logits[order]
    if params.temperature == 0:
        return int(ids[0])
    if 0 < params.top_k < len(ids):
        ids, logits = ids[: params.top_k], logits[: params.top_k]
    prob = np.exp((logits - logits[0]) / params.temperature)
    if params.min_p > 0:
        keep = prob >= params.min_p
        ids, prob = ids[keep], prob[keep]
    if params.top_p < 1:
        cumulative = np.cumsum(prob)
        n = int(np.searchsorted(cumulative, params.top_p * cumulative[-1])) + 1
        ids, prob = ids[:n], prob[:n]
    if params.top_p == 1 and params.min_p == 0:  # no likelihood order needed: draw in id order
        by_id = np.argsort(ids)
        ids, prob = ids[by_id], prob[by_id]
    cumulative = np.cumsum(prob)
    index = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
    return int(ids[min(index, len(ids) - 1)])


def sample(logits, allowed, params: SamplingParams = SamplingParams(), seed: int = 0, walkers=0, steps=0):
    logits = np.atleast_2d(np.asarray(logits, np.float32))
    rows = len(logits)
    allowed = np.broadcast_to(np.asarray(allowed), (rows, 2))
    walkers = np.broadcast_to(np.asarray(walkers), (rows,))
    steps = np.broadcast_to(np.asarray(steps), (rows,))
    tokens = np.array(
        [
            sample_row(logits[r], *allowed[r], params, counter_uniform(seed, int(walkers[r]), int(steps[r])))
            for r in range(rows)
        ],
        dtype=np.int32,
    )
    logprobs = log_softmax(logits)[np.arange(rows), tokens]
    return tokens, logprobs.astype(np.float32)
