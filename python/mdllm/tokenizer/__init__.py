"""FoldToken-style structure tokenizer: invariant kNN-frame encoder, finite scalar quantizer and a
deterministic transformer decoder back to N, CA, C, O. Training needs PyTorch (extra ``train``);
inference runs on the C++ core."""

from mdllm.tokenizer.api import FoldTokenizer
from mdllm.tokenizer.config import TokenizerConfig

__all__ = ["FoldTokenizer", "TokenizerConfig"]
