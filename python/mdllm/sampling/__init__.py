"""Token sampling on the compiled core, for many walkers at once.

Each row of ``logits`` (rows, vocab) is one walker's next-token distribution. ``allowed`` (rows, 2)
holds the allowed id range [begin, end) of each row (structure tokens inside a frame, the separator
at its end). Random numbers come from a counter-based generator keyed by (seed, walker, step), so a
walker's tokens do not depend on which other walkers share its batch. The returned log-probabilities
are those of the chosen tokens under the unmodified model distribution (softmax of the raw logits).
:mod:`mdllm.sampling.numpy_ref` implements the same algorithm in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdllm import _core
from mdllm.errors import MdllmError

counter_uniform = _core.counter_uniform


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off

    def __post_init__(self):
        if not (self.temperature >= 0 and self.top_k >= 0 and 0 < self.top_p <= 1 and 0 <= self.min_p <= 1):
            raise MdllmError(
                f"sampling parameters out of range: {self} "
                "(temperature >= 0, top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1)"
            )


def _rows(logits, allowed, *per_row):
    logits = np.ascontiguousarray(logits, np.float32)
    if logits.ndim == 1:
        logits = logits[None]
    if logits.ndim != 2:
        raise MdllmError(f"logits must be (rows, vocab), got shape {logits.shape}")
    rows = logits.shape[0]
    allowed = np.ascontiguousarray(np.broadcast_to(np.asarray(allowed, np.int32), (rows, 2)))
    arrays = [np.ascontiguousarray(np.broadcast_to(np.asarray(a, np.uint64), (rows,))) for a in per_row]
    return logits, allowed, arrays


def sample(logits, allowed, params: SamplingParams = SamplingParams(), seed: int = 0, walkers=0, steps=0):
    """One token per row. Returns (tokens int32 (rows,), logprobs float32 (rows,))."""
    logits, allowed, (walkers, steps) = _rows(logits, allowed, walkers, steps)
    rows, vocab = logits.shape
    tokens = np.empty(rows, np.int32)
    logprobs = np.empty(rows, np.float32)
    _core.sample(
        logits,
        rows,
        vocab,
        allowed,
        params.temperature,
        params.top_k,
        params.top_p,
        params.min_p,
        seed,
        walkers,
        steps,
        tokens,
        logprobs,
    )  # bad input: MdllmError from the core
    return tokens, logprobs


def token_logprobs(logits, tokens):
    """log softmax(logits)[token] per row: the model's likelihood of given tokens."""
    logits = np.ascontiguousarray(logits, np.float32)
    if logits.ndim != 2:
        raise MdllmError(f"logits must be (rows, vocab), got shape {logits.shape}")
    tokens = np.ascontiguousarray(tokens, np.int32)
    out = np.empty(logits.shape[0], np.float32)
    _core.token_logprobs(logits, logits.shape[0], logits.shape[1], tokens, out)
    return out
