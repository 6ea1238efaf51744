"""Structure tokenizers, one module per kind: motion tokens anchored to a key frame (``motion``, the
default for generation), the torsion codebook (``torsion``, describes a fold; ``FoldTokenizer``) and the
FoldToken-style transformer (``model``, the learned-decoder baseline). ``load_tokenizer(dir)`` loads any
kind from its directory. Inference runs on the C++ core; training needs PyTorch (the torsion and
transformer kinds) or numpy (the motion kind)."""

from mdllm.tokenizer.api import FoldTokenizer, load_tokenizer
from mdllm.tokenizer.config import MotionConfig, TokenizerConfig, TorsionConfig
from mdllm.tokenizer.motion import MotionTokenizer

__all__ = ["FoldTokenizer", "MotionConfig", "MotionTokenizer", "TokenizerConfig", "TorsionConfig", "load_tokenizer"]
