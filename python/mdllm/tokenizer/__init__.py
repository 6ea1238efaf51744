"""Structure tokenizers, one module per kind:

- ``motion`` (``MotionTokenizer``, ``models/motiontoken``; trained by ``motion_train``): one token per
  residue per frame, the residue's displacement from a key frame. The default for generation.
- ``torsion`` (``TorsionTokenizer``, ``models/torsiontoken``; PyTorch reference ``torsion_torch``, trained
  by ``torsion_train``): one (omega, phi, psi) code per residue that describes a fold; it describes the
  key frame's fold in the language model's prompt.

``load_tokenizer(dir)`` loads either kind from its directory; ``api`` holds what the kinds share. Inference
runs on the C++ core; training needs numpy (motion) or PyTorch (torsion). ``FoldTokenizer`` is the old,
deprecated name of ``TorsionTokenizer``.
"""

from mdllm.tokenizer.api import load_tokenizer
from mdllm.tokenizer.config import MotionConfig, TorsionConfig
from mdllm.tokenizer.motion import MotionTokenizer
from mdllm.tokenizer.torsion import TorsionTokenizer

__all__ = ["MotionConfig", "MotionTokenizer", "TorsionConfig", "TorsionTokenizer", "load_tokenizer"]


def __getattr__(name):
    if name == "FoldTokenizer":  # the name before the kinds had modules of their own (mdllm 0.1)
        import warnings

        warnings.warn(
            "mdllm FoldTokenizer is deprecated; use TorsionTokenizer (the same class)", DeprecationWarning, stacklevel=2
        )
        return TorsionTokenizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
