"""The structure language model: text format, Mistral model, LoRA, training, GGUF export.

Importing this package needs PyTorch (the ``train`` extra); generation from GGUF does not.
"""

from mdllm.lm.model import MistralLM, ModelConfig
from mdllm.lm.store import load, load_hf, save
from mdllm.lm.text import Vocabulary

__all__ = ["MistralLM", "ModelConfig", "Vocabulary", "load", "load_hf", "save"]
