"""The C++ sampler: agreement with the numpy twin, the distribution it draws from, constraints,
likelihoods and reproducibility across batch sizes."""

import numpy as np
import pytest

from mdllm import MdllmError, sampling
from mdllm.sampling import SamplingParams, numpy_ref

PARAMS = [
    SamplingParams(),
    SamplingParams(0.7, 20),
    SamplingParams(1.3, 0, 0.9),
    SamplingParams(1.0, 50, 0.8, 0.05),
    SamplingParams(0.9, 0, 1.0, 0.1),
    SamplingParams(0),
]


@pytest.fixture(scope="module")
def logits():
    return (np.random.default_rng(0).normal(size=(48, 300)) * 3).astype(np.float32)


@pytest.mark.parametrize("params", PARAMS, ids=str)
def test_matches_numpy_reference(logits, params):
    walkers = np.arange(len(logits))
    ours = sampling.sample(logits, [10, 266], params, seed=11, walkers=walkers, steps=7)
    ref = numpy_ref.sample(logits, [10, 266], params, seed=11, walkers=walkers, steps=7)
    np.testing.assert_array_equal(ours[0], ref[0])
    np.testing.assert_allclose(ours[1], ref[1], atol=1e-5)


def _expected(row, begin, end, p: SamplingParams):
    """The filtered, renormalised distribution the sampler should draw from."""
    z = row[begin:end].astype(np.float64) / p.temperature
    prob = np.exp(z - z.max())
    order = np.argsort(-prob, kind="stable")
    keep = np.zeros(len(prob), bool)
    keep[order[: p.top_k or len(prob)]] = True
    keep &= prob >= p.min_p * prob.max()
    kept = order[keep[order]]
    cumulative = np.cumsum(prob[kept]) / prob[kept].sum()
    kept = kept[: np.searchsorted(cumulative, p.top_p) + 1]
    out = np.zeros(len(prob))
    out[kept] = prob[kept] / prob[kept].sum()
    return out


@pytest.mark.parametrize(
    "params",
    [SamplingParams(1.0), SamplingParams(0.5, 4), SamplingParams(1.5, 0, 0.7), SamplingParams(1.0, 0, 1.0, 0.3)],
    ids=str,
)
def test_draws_follow_the_filtered_distribution(params):
    row = np.array([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, 3.0, 9.0], np.float32)
    n = 20000
    tokens, _ = sampling.sample(np.tile(row, (n, 1)), [0, 8], params, seed=5, walkers=0, steps=np.arange(n))
    observed = np.bincount(tokens, minlength=8)[:8] / n
    np.testing.assert_allclose(observed, _expected(row, 0, 8, params), atol=0.015)


def test_constraint_holds_even_against_the_model():
    logits = np.zeros((200, 50), np.float32)
    logits[:, 0] = 50.0  # the model strongly prefers a forbidden token
    tokens, logprobs = sampling.sample(logits, [10, 20], seed=1, walkers=np.arange(200))
    assert tokens.min() >= 10 and tokens.max() < 20
    assert len(np.unique(tokens)) == 10
    assert np.all(logprobs < -45)  # the unmodified model finds them very unlikely, and says so
    separator, _ = sampling.sample(logits, [49, 50], seed=1, walkers=np.arange(200))
    assert np.all(separator == 49)


def test_logprobs_are_under_the_unmodified_distribution(logits):
    params = SamplingParams(0.5, 5, 0.9)
    tokens, logprobs = sampling.sample(logits, [0, 300], params, seed=2, walkers=np.arange(len(logits)))
    expected = numpy_ref.log_softmax(logits)[np.arange(len(logits)), tokens]
    np.testing.assert_allclose(logprobs, expected, atol=1e-5)
    np.testing.assert_allclose(sampling.token_logprobs(logits, tokens), expected, atol=1e-5)


def test_greedy_takes_the_best_allowed_token(logits):
    tokens, _ = sampling.sample(logits, [100, 200], SamplingParams(0))
    np.testing.assert_array_equal(tokens, 100 + logits[:, 100:200].argmax(axis=1))


def test_walker_tokens_do_not_depend_on_the_batch(logits):
    walkers = np.arange(len(logits))
    batch, _ = sampling.sample(logits, [0, 300], SamplingParams(1.0, 40), seed=9, walkers=walkers, steps=3)
    alone = [
        sampling.sample(logits[w], [0, 300], SamplingParams(1.0, 40), seed=9, walkers=w, steps=3)[0][0] for w in walkers
    ]
    np.testing.assert_array_equal(batch, alone)
    again, _ = sampling.sample(logits, [0, 300], SamplingParams(1.0, 40), seed=9, walkers=walkers, steps=3)
    np.testing.assert_array_equal(batch, again)
    other_seed, _ = sampling.sample(logits, [0, 300], SamplingParams(1.0, 40), seed=10, walkers=walkers, steps=3)
    assert (other_seed != batch).mean() > 0.5


def test_counter_uniform_matches_numpy_and_is_uniform():
    draws = np.array([sampling.counter_uniform(3, w, s) for w in range(40) for s in range(50)])
    assert draws.min() >= 0 and draws.max() < 1
    assert abs(draws.mean() - 0.5) < 0.02 and abs(draws.var() - 1 / 12) < 0.01
    assert sampling.counter_uniform(3, 4, 5) == numpy_ref.counter_uniform(3, 4, 5)


def test_bad_requests_are_clear_errors(logits):
    with pytest.raises(MdllmError, match=r"\[5, 5\) is empty"):
        sampling.sample(logits, [5, 5])
    with pytest.raises(MdllmError, match="outside the vocabulary of 300"):
        sampling.sample(logits, [0, 301])
    with pytest.raises(MdllmError, match="out of range"):
        SamplingParams(top_p=0)
    with pytest.raises(MdllmError, match="outside the vocabulary"):
        sampling.token_logprobs(logits[:1], [300])


def test_low_temperature_and_wide_logits_do_not_overflow(logits):
    """exp((logit - best) / T) is at most 1: a spread of 400 nats at T = 0.2 (exp(2000) would overflow)
    still draws like the reference, almost always the best allowed token."""
    wide = logits * 50
    params = SamplingParams(0.2)
    walkers = np.arange(len(wide))
    ours = sampling.sample(wide, [10, 266], params, seed=3, walkers=walkers, steps=1)[0]
    ref = numpy_ref.sample(wide, [10, 266], params, seed=3, walkers=walkers, steps=1)[0]
    np.testing.assert_array_equal(ours, ref)
    assert (ours == 10 + wide[:, 10:266].argmax(axis=1)).mean() > 0.9
