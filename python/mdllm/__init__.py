"""mdllm: molecular-dynamics trajectories as a language.

Coordinates in every public array are nanometres, float32, shape (frames, residues, 4, 3) with
atom order N, CA, C, O.
"""

from mdllm.errors import MdllmError
from mdllm.io import Backbone, load_backbone, save
from mdllm.tokenizer import FoldTokenizer

__version__ = "0.1.0"
__all__ = ["Backbone", "FoldTokenizer", "MdllmError", "load_backbone", "save", "__version__"]
