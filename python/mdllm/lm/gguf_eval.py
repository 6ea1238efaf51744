"""Logits of a GGUF model for given token ids, computed by llama.cpp (through llama-cpp-python's
low-level API). Used for the PyTorch/llama.cpp parity check and for scoring.

Two settings matter for exact comparisons:
- the KV cache is kept in float32 and flash attention is off (llama.cpp's defaults, float16 cache and
  flash attention, cost 1e-3 to 1e-2 in the logits);
- a model with ``mdllm.frame_span`` (mdllm.lm.model.ModelConfig.frame_span) runs with rope_freq_scale
  frame_span / (L + 1) (with fine codes / (2 L + 1)), L the amino-acid tokens among the ids, as PyTorch
  scales its positions;
- llama.cpp's "extra" CPU weight buffers (AMX / repacked kernels) are off by default here: in the
  llama.cpp bundled with llama-cpp-python 0.3.36, the AMX Q8_0 matrix multiply crashes (SIGSEGV) on
  AMX-capable CPUs, and the plain kernels give the same results elsewhere.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file
from mdllm.lm import gguf_keys as keys
from mdllm.lm.text import frame_position_scale, residue_count

GGML_TYPE_F32 = 0
LLAMA_FLASH_ATTN_TYPE_DISABLED = 0


def _quiet(level, text, user_data):  # llama.cpp's log callback: drop everything
    return None


_LOG_CALLBACK = None


def quiet_llama() -> None:
    """Silence llama.cpp's own logging (it writes every loaded tensor to stderr)."""
    import llama_cpp

    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(_quiet)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def _metadata_int(model, key: str) -> int:
    """An integer GGUF metadata value of a loaded llama.cpp model, 0 when absent."""
    import llama_cpp

    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return int(buf.value.decode()) if n > 0 else 0


def gguf_logits(path, ids, n_threads: int = 1, extra_buffers: bool = False) -> np.ndarray:
    """float32 (T, vocab) logits of every position of one sequence of token ids."""
    import llama_cpp

    path = Path(path)
    if not path.exists():
        raise in_file(path, "no such GGUF file")
    ids = [int(i) for i in ids]
    if not ids:
        raise MdllmError("no token ids to evaluate")
    quiet_llama()
    llama_cpp.llama_backend_init()

    mparams = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = 0
    mparams.use_extra_bufts = extra_buffers
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
    if not model:
        raise in_file(path, "llama.cpp could not load this GGUF file")
    ctx = batch = None
    try:
        n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        if max(ids) >= n_vocab or min(ids) < 0:
            raise MdllmError(f"token id outside the model's vocabulary of {n_vocab}")
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = len(ids)
        cparams.n_batch = cparams.n_ubatch = len(ids)
        cparams.n_threads = cparams.n_threads_batch = n_threads
        cparams.type_k = cparams.type_v = GGML_TYPE_F32
        cparams.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED  # its F16 softmax path costs ~1e-2
        span = _metadata_int(model, keys.FRAME_SPAN)
        if span:
            residues = int(residue_count(np.asarray(ids), _metadata_int(model, keys.AMINO_ACID_OFFSET)))
            per_residue = 2 if _metadata_int(model, keys.FINE_CODEBOOK_SIZE) else 1  # fine slot after each code
            cparams.rope_freq_scale = frame_position_scale(span, residues, per_residue)
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            raise in_file(path, "llama.cpp could not create a context")
        batch = llama_cpp.llama_batch_init(len(ids), 0, 1)
        for i, tok in enumerate(ids):
            batch.token[i] = tok
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = True
        batch.n_tokens = len(ids)
        status = llama_cpp.llama_decode(ctx, batch)
        if status != 0:
            raise in_file(path, f"llama.cpp decode failed (status {status})")
        ptr = llama_cpp.llama_get_logits(ctx)
        return np.ctypeslib.as_array(ptr, shape=(len(ids), n_vocab)).astype(np.float32, copy=True)
    finally:
        if batch is not None:
            llama_cpp.llama_batch_free(batch)
        if ctx:
            llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
