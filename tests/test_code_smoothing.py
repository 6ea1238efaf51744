"""Soft fine-tuning targets over neighbouring motion codes (mdllm.lm.model.CodeSmoothing)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from mdllm.errors import MdllmError  # noqa: E402
from mdllm.lm.model import CodeSmoothing, loss_and_accuracy  # noqa: E402

OFFSET = 3  # ids below are other tokens (specials, residues)


def line_codebook(n=8, step_nm=0.01):
    """Codes along one axis, ``step_nm`` apart in their first displacement number."""
    cb = np.zeros((n, 12))
    cb[:, 0] = np.arange(n) * step_nm
    return cb


def test_neighbours_start_with_the_code_and_weigh_less_with_distance():
    s = CodeSmoothing(line_codebook(), OFFSET, sigma_A=0.1, neighbours=3)
    assert s.ids.shape == (8, 3) and torch.equal(s.ids[:, 0], torch.arange(8) + OFFSET)
    np.testing.assert_allclose(s.weights.sum(1).numpy(), 1.0, rtol=1e-6)
    # code 4: itself, then 3 and 5, 0.1 Å away on either side: no tilt, plain Gaussian weights
    assert set(s.ids[4, 1:].tolist()) == {3 + OFFSET, 5 + OFFSET}
    w = s.weights[4].tolist()
    assert w[1] == pytest.approx(w[2]) and w[1] / w[0] == pytest.approx(np.exp(-0.5), rel=1e-4)


def test_soft_targets_keep_the_observed_displacement_as_their_mean():
    """Neighbours on one side (code 4 with 2 or 6 as its fourth neighbour; code 0 at the end of the
    line) would pull a plain Gaussian target's mean towards them; the tilted weights keep it near the code."""
    cb = line_codebook(step_nm=0.05)  # codes 0.5 Å apart, about as far as the shipped codebook's
    s = CodeSmoothing(cb, OFFSET, sigma_A=0.5, neighbours=4)
    offsets_A = (cb[s.ids.numpy() - OFFSET, 0] - cb[:, None, 0]) * 10.0
    mean = (s.weights.numpy() * offsets_A).sum(1)
    plain = np.exp(-(offsets_A**2) / (2 * 0.5**2))
    plain_mean = (plain / plain.sum(1, keepdims=True) * offsets_A).sum(1)
    assert abs(plain_mean[4]) > 0.05 and abs(mean[4]) < 0.5 * abs(plain_mean[4])
    assert abs(mean[0]) < 0.5 * abs(plain_mean[0])
    assert s.weights[0, 0] > s.weights[4, 0]  # the end code keeps more of its own mass


def _batch(vocab, targets):
    torch.manual_seed(0)
    logits = torch.randn(1, len(targets) + 1, vocab, requires_grad=True)
    return logits, torch.tensor([[0, *targets]])


def test_narrow_smoothing_is_the_one_hot_loss_and_other_tokens_stay_one_hot():
    vocab = OFFSET + 8
    logits, targets = _batch(vocab, [1, OFFSET + 2, -100, OFFSET + 7, 2])
    hard, correct, counted = loss_and_accuracy(logits, targets)
    narrow = CodeSmoothing(line_codebook(), OFFSET, sigma_A=1e-4)
    soft, correct_s, counted_s = loss_and_accuracy(logits, targets, smoothing=narrow)
    assert float(soft) == pytest.approx(float(hard), rel=1e-5)
    assert int(counted) == int(counted_s) == 4 and int(correct) == int(correct_s)
    # a non-code target alone: the same loss whatever the width
    logits1, targets1 = _batch(vocab, [1, 2])
    wide = CodeSmoothing(line_codebook(), OFFSET, sigma_A=1.0)
    a = loss_and_accuracy(logits1, targets1)[0]
    b = loss_and_accuracy(logits1, targets1, smoothing=wide)[0]
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_soft_targets_raise_the_observed_codes_neighbours_more_than_far_codes():
    vocab = OFFSET + 8
    logits = torch.zeros(1, 2, vocab, requires_grad=True)
    targets = torch.tensor([[0, OFFSET + 4]])
    s = CodeSmoothing(line_codebook(), OFFSET, sigma_A=0.1, neighbours=4)
    loss_and_accuracy(logits, targets, smoothing=s)[0].backward()
    step = -logits.grad[0, 0]  # gradient descent direction on the logits
    assert step[OFFSET + 4] > step[OFFSET + 5] > 0 > step[OFFSET + 0]
    # one-hot targets treat the neighbour like any other code
    logits.grad = None
    loss_and_accuracy(logits, targets)[0].backward()
    step = -logits.grad[0, 0]
    assert step[OFFSET + 5] == pytest.approx(float(step[OFFSET + 0]))


def test_soft_loss_matches_its_definition():
    vocab = OFFSET + 8
    logits, targets = _batch(vocab, [OFFSET + 1, OFFSET + 6])
    s = CodeSmoothing(line_codebook(), OFFSET, sigma_A=0.2, neighbours=3)
    got = loss_and_accuracy(logits, targets, smoothing=s)[0]
    log_p = F.log_softmax(logits[0, :-1].float(), -1)
    want = sum(-(s.weights[c] * log_p[i, s.ids[c]]).sum() for i, c in enumerate([1, 6]))
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_width_must_be_positive():
    with pytest.raises(MdllmError, match="positive"):
        CodeSmoothing(line_codebook(), OFFSET, sigma_A=0.0)
