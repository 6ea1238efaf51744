"""One error boundary: bad input reaches the user as MdllmError, whether Python or the C++ core
found it, and the command line prints it as one line."""

import numpy as np
import pytest

from mdllm import MdllmError, _core


def test_the_core_raises_mdllm_error_itself():
    logits = np.zeros((1, 4), np.float32)
    allowed = np.array([[0, 4]], np.int32)
    walker, step = np.zeros(1, np.int32), np.zeros(1, np.int32)
    tokens, logprobs = np.empty(1, np.int32), np.empty(1, np.float32)
    with pytest.raises(MdllmError, match="sampling parameters out of range"):  # a negative temperature
        _core.sample(logits, 1, 4, allowed, -1.0, 0, 1.0, 0.0, 0, walker, step, tokens, logprobs)


def test_too_few_residues_for_a_torsion_codebook():
    pytest.importorskip("torch")
    from mdllm.tokenizer.torsion_train import kmeans_codebook

    with pytest.raises(MdllmError, match="3 residues cannot make 8 codes"):
        kmeans_codebook(np.zeros((3, 3), np.float32), 8, iters=1, seed=0, progress=False)


def test_degenerate_first_residue_in_the_torch_reference():
    torch = pytest.importorskip("torch")
    from mdllm.tokenizer.torsion_torch import residue_frame_coordinates

    with pytest.raises(MdllmError, match="degenerate first residue"):
        residue_frame_coordinates(torch.zeros((1, 2, 4, 3)))
