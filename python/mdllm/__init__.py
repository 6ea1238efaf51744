"""mdllm: molecular-dynamics trajectories as a language.

Coordinates in every public array are nanometres, float32, shape (frames, residues, 4, 3) with
atom order N, CA, C, O.
"""

from mdllm.errors import MdllmError
from mdllm.io import Backbone, load_backbone, save
from mdllm.tokenizer import MotionTokenizer, TorsionTokenizer, load_tokenizer

__version__ = "0.1.0"
__all__ = [
    "Backbone",
    "MdllmError",
    "MotionTokenizer",
    "TorsionTokenizer",
    "load_backbone",
    "load_tokenizer",
    "save",
    "__version__",
]


def __getattr__(name):
    if name == "FoldTokenizer":  # deprecated alias of TorsionTokenizer, kept for scripts written for 0.1
        import mdllm.tokenizer

        return mdllm.tokenizer.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
