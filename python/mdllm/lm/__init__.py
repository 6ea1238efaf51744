"""The structure language model: text format, Mistral model, LoRA, training, GGUF export.

The model, training and export need PyTorch (the ``train`` extra) and are imported on first use, so
that ``mdllm.lm.text`` (the vocabulary layout, numpy only) serves generation from GGUF without it.
"""

import importlib

_LAZY = {
    "MistralLM": "mdllm.lm.model",
    "ModelConfig": "mdllm.lm.model",
    "load": "mdllm.lm.store",
    "load_hf": "mdllm.lm.store",
    "save": "mdllm.lm.store",
    "Vocabulary": "mdllm.lm.text",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mdllm.lm' has no attribute {name!r}")
