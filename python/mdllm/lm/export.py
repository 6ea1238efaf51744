"""Merge LoRA and write GGUF for llama.cpp (architecture ``llama``).

F32 and F16 files are written with the ``gguf`` package; Q8_0 is made from the F32 file by
llama.cpp's own quantizer (``llama_model_quantize`` through llama-cpp-python).

Rotary layout: our PyTorch model (like Hugging Face) rotates the two halves of each head, while
llama.cpp's llama architecture rotates interleaved pairs (0,1), (2,3), ... . Permuting the rows of
q_proj and k_proj within each head so that row 2i holds old row i and row 2i+1 old row hd/2 + i makes
the two computations identical (q.k products are unchanged because q and k get the same permutation).
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from mdllm.errors import MdllmError
from mdllm.files import atomic_output
from mdllm.lm import gguf_keys as keys
from mdllm.lm.lora import merge_lora
from mdllm.lm.model import MistralLM
from mdllm.lm.text import SPECIALS

GGUF_TYPES = ("f32", "f16", "q8_0")
LLAMA_FTYPE_MOSTLY_Q8_0 = 7  # llama.h enum llama_ftype

FRAME_RULE = (
    "after the prefix '<s> <seq> residues </seq> [conditioning]', every frame is exactly "
    "L structure tokens (L = number of residues in the prefix) followed by one <frame> token; "
    "with fine codes each structure token is followed by its fine token where its code takes one, "
    "else by <f_none>"
)


def merged_copy(model: MistralLM) -> MistralLM:
    """A copy of the model with every LoRA adapter folded into its base weight."""
    merged = copy.deepcopy(model)
    merge_lora(merged)
    merged.meta = dict(merged.meta, lora=None, merged_lora=model.meta.get("lora"))
    merged.eval()
    return merged


def interleave_rotary_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows of a q/k projection from the rotate-halves to the interleaved-pairs layout."""
    out_dim, in_dim = weight.shape
    head_dim = out_dim // n_heads
    return weight.reshape(n_heads, 2, head_dim // 2, in_dim).swapaxes(1, 2).reshape(out_dim, in_dim).copy()


def gguf_tensors(model: MistralLM):
    """(GGUF name, float32 array) for every weight, q/k permuted for llama.cpp's rotary layout."""
    import gguf

    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    state = model.state_dict()
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # llama.cpp reuses token_embd when output is absent
    for hf_name, tensor in state.items():
        if "lora_" in hf_name or ".base." in hf_name:
            raise MdllmError("model still has LoRA adapters; merge them before export")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("self_attn.q_proj.weight"):
            array = interleave_rotary_rows(array, cfg.num_attention_heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            array = interleave_rotary_rows(array, cfg.num_key_value_heads)
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise MdllmError(f"no GGUF name for parameter {hf_name}")
        yield name, array


def write_gguf(model: MistralLM, path, dtype: str = "f32", name: str = "mdllm structure LM") -> Path:
    """Write ``model`` (LoRA merged first if present) as GGUF of type f32, f16 or q8_0."""
    dtype = dtype.lower()
    if dtype not in GGUF_TYPES:
        raise MdllmError(f"GGUF type {dtype!r} not one of {', '.join(GGUF_TYPES)}")
    if model.vocab is None:
        raise MdllmError("model has no vocabulary layout (tokenizer hash, codebook size); cannot export")
    cfg = model.config
    if cfg.sliding_window is not None and cfg.sliding_window < cfg.max_position_embeddings:
        raise MdllmError(
            f"sliding window {cfg.sliding_window} < context {cfg.max_position_embeddings}: "
            "llama.cpp's llama architecture has no sliding window, so the GGUF would "
            "compute something else"
        )
    path = Path(path)
    if dtype == "q8_0":
        return _quantize_q8_0(model, path, name)
    with atomic_output(path) as tmp:
        _write(merged_copy(model), tmp, dtype, name)
    return path


def _write(model: MistralLM, path: Path, dtype: str, name: str) -> None:
    import gguf

    cfg, vocab = model.config, model.vocab
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(float(cfg.rope_theta))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_vocab_size(cfg.vocab_size)

    # llama.cpp needs a vocabulary of the model's size; our tokens are whole symbols, never
    # produced from text by llama.cpp's tokenizer, so a SentencePiece-type list of them suffices.
    strings = [f"<base_{i}>" for i in range(vocab.offset)] + vocab.token_strings()
    types = [gguf.TokenType.NORMAL] * vocab.offset + [
        gguf.TokenType.CONTROL if i < len(SPECIALS) else gguf.TokenType.USER_DEFINED
        for i in range(len(strings) - vocab.offset)
    ]
    w.add_tokenizer_model("llama")
    w.add_token_list(strings)
    w.add_token_scores([0.0] * len(strings))
    w.add_token_types(types)
    w.add_bos_token_id(vocab.bos_id)
    w.add_eos_token_id(vocab.eos_id)
    w.add_pad_token_id(vocab.pad_id)
    w.add_unk_token_id(vocab.amino_acid_offset + 20)
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)

    # Our own metadata: what generation needs to build contexts and check inputs.
    w.add_string(keys.TOKENIZER_HASH, vocab.tokenizer_hash)
    w.add_uint32(keys.CODEBOOK_SIZE, vocab.codebook_size)
    w.add_uint32(keys.N_CONDITIONING, vocab.n_conditioning)
    w.add_uint32(keys.VOCAB_OFFSET, vocab.offset)
    w.add_uint32(keys.FRAME_TOKEN_ID, vocab.frame_id)
    w.add_uint32(keys.SEQ_START_TOKEN_ID, vocab.seq_start_id)
    w.add_uint32(keys.SEQ_END_TOKEN_ID, vocab.seq_end_id)
    w.add_uint32(keys.CONDITIONING_OFFSET, vocab.conditioning_offset)
    w.add_uint32(keys.AMINO_ACID_OFFSET, vocab.amino_acid_offset)
    w.add_uint32(keys.STRUCTURE_OFFSET, vocab.structure_offset)
    w.add_string(keys.FRAME_RULE, FRAME_RULE)
    if cfg.frame_span:  # llama.cpp runs it as rope_freq_scale = frame_span / (tokens of a frame) per protein
        w.add_uint32(keys.FRAME_SPAN, cfg.frame_span)
    if vocab.fine_codebook_size:  # two slots per residue: its fine token, or <f_none> (id offset + size)
        w.add_uint32(keys.FINE_CODEBOOK_SIZE, vocab.fine_codebook_size)
        w.add_uint32(keys.FINE_OFFSET, vocab.fine_offset)
        w.add_string(keys.FINE_HASH, vocab.fine_hash)
    # The proteins the model was (last) trained on; one residue count means a single-protein model.
    sequences = list((model.meta.get("training") or {}).get("sequences") or [])
    lengths = {len(s) for s in sequences}
    w.add_uint32(keys.N_RESIDUES, lengths.pop() if len(lengths) == 1 else 0)
    if sequences:
        w.add_array(keys.TRAIN_SEQUENCES, sequences)
    w.add_string(
        keys.CONFIG,
        json.dumps(
            {
                "model": cfg.to_dict(),
                "vocab": vocab.to_dict(),
                "merged_lora": model.meta.get("merged_lora"),
                "training": model.meta.get("training"),
            }
        ),
    )

    for tensor_name, array in gguf_tensors(model):
        if dtype == "f16" and array.ndim == 2:
            array = array.astype(np.float16)  # norms stay float32, as llama.cpp expects
        w.add_tensor(tensor_name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _quantize_q8_0(model: MistralLM, path: Path, name: str) -> Path:
    import ctypes

    import llama_cpp

    from mdllm.lm.gguf_eval import quiet_llama

    quiet_llama()
    cfg = model.config
    if cfg.hidden_size % 32 or cfg.intermediate_size % 32:
        raise MdllmError("Q8_0 needs hidden_size and intermediate_size divisible by 32")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".q8_0-") as scratch, atomic_output(path) as tmp:
        f32_path = Path(scratch) / "model.f32.gguf"
        _write(merged_copy(model), f32_path, "f32", name)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = LLAMA_FTYPE_MOSTLY_Q8_0
        params.nthread = max(1, torch.get_num_threads())
        status = llama_cpp.llama_model_quantize(str(f32_path).encode(), str(tmp).encode(), ctypes.byref(params))
        if status != 0:
            raise MdllmError(f"{path}: llama.cpp quantization to Q8_0 failed (status {status})")
    return path


def read_metadata(path) -> dict:
    """Our ``mdllm.*`` keys of a GGUF file (used by generation to check tokens and residues)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out = {}
    for key, field in reader.fields.items():
        if key.startswith(keys.PREFIX):
            out[key[len(keys.PREFIX) :]] = field.contents()
    return out
