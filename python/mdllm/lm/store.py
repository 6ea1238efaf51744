"""Model directories: ``config.json`` (architecture, vocabulary layout, tokenizer identity, LoRA
settings) beside ``model.safetensors``. Also reads a local Hugging Face Llama/Mistral checkpoint
and extends its vocabulary with ours."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mdllm.errors import MdllmError, in_file
from mdllm.files import atomic_output
from mdllm.lm.lora import add_lora
from mdllm.lm.model import MistralLM, ModelConfig
from mdllm.lm.text import Vocabulary

FORMAT = "mdllm-lm-1"


def state_for_saving(model: MistralLM) -> dict[str, torch.Tensor]:
    state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # safetensors stores no shared tensors; it is embed_tokens
    return state


def model_config_dict(model: MistralLM) -> dict:
    return {
        "format": FORMAT,
        "model": model.config.to_dict(),
        "vocab": model.vocab.to_dict() if model.vocab is not None else None,
        "lora": model.meta.get("lora"),
        "training": model.meta.get("training"),
    }


def save(model: MistralLM, directory) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/config.json`` atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_output(directory / "model.safetensors") as tmp:
        save_file(state_for_saving(model), str(tmp), metadata={"format": FORMAT})
    with atomic_output(directory / "config.json") as tmp:
        tmp.write_text(json.dumps(model_config_dict(model), indent=2) + "\n")
    return directory


def build(config: dict) -> MistralLM:
    """An untrained model (with LoRA wrappers if the config says so) from a config dict."""
    model = MistralLM(ModelConfig.from_dict(config["model"]))
    model.vocab = Vocabulary.from_dict(config["vocab"]) if config.get("vocab") else None
    if model.vocab is not None and model.vocab.size != model.config.vocab_size:
        raise MdllmError(f"vocabulary layout has {model.vocab.size} ids but the model {model.config.vocab_size}")
    lora = config.get("lora")
    if lora:
        add_lora(model, lora["rank"], lora["alpha"], lora.get("dropout", 0.0), lora["targets"])
        model.meta["lora"] = lora
    model.meta["training"] = config.get("training")
    return model


def load(path) -> MistralLM:
    """The PyTorch model of a model directory (or its config.json / model.safetensors)."""
    from safetensors.torch import load_file

    path = Path(path)
    directory = path if path.is_dir() else path.parent
    config_path, weights_path = directory / "config.json", directory / "model.safetensors"
    for p in (config_path, weights_path):
        if not p.exists():
            raise in_file(p, "missing (a model directory holds config.json and model.safetensors)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise in_file(config_path, f"not valid JSON ({exc})") from None
    if config.get("format") != FORMAT:
        raise in_file(config_path, f"not an mdllm language model config (format {config.get('format')!r})")
    model = build(config)
    state = load_file(str(weights_path))
    if model.config.tie_word_embeddings:
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise in_file(
            weights_path, f"weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.eval()
    return model


# --- Hugging Face checkpoints ------------------------------------------------------------------


def _hf_config(directory: Path) -> ModelConfig:
    path = directory / "config.json"
    if not path.exists():
        raise in_file(path, "missing; a Hugging Face checkpoint directory needs config.json")
    hf = json.loads(path.read_text())
    if hf.get("model_type") not in ("llama", "mistral"):
        raise in_file(path, f"model_type {hf.get('model_type')!r} is not llama or mistral")
    cfg = ModelConfig(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_hidden_layers=hf["num_hidden_layers"],
        num_attention_heads=hf["num_attention_heads"],
        num_key_value_heads=hf.get("num_key_value_heads", hf["num_attention_heads"]),
        max_position_embeddings=hf.get("max_position_embeddings", 4096),
        rms_norm_eps=hf.get("rms_norm_eps", 1e-5),
        rope_theta=hf.get("rope_theta", 10000.0),
        sliding_window=hf.get("sliding_window"),
        tie_word_embeddings=hf.get("tie_word_embeddings", False),
    )
    if hf.get("head_dim") not in (None, cfg.head_dim):
        raise in_file(path, "head_dim other than hidden_size / num_attention_heads is not supported")
    if hf.get("rope_scaling"):
        raise in_file(path, "rope_scaling is not supported")
    return cfg


def _hf_shards(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [directory / n for n in names]
    single = directory / "model.safetensors"
    if single.exists():
        return [single]
    raise in_file(
        directory, "no model.safetensors or model.safetensors.index.json (pickled .bin checkpoints are not read)"
    )


def load_hf(directory, codebook_size: int, tokenizer_hash: str, n_conditioning: int = 8, seed: int = 0) -> MistralLM:
    """A local HF Llama/Mistral checkpoint with our tokens appended after its own vocabulary.

    New embedding and output rows start at the mean of the existing rows plus small noise, so the
    extended model's predictions on the base vocabulary are unchanged at the start."""
    from safetensors.torch import load_file

    directory = Path(directory)
    base_cfg = _hf_config(directory)
    state = {}
    for shard in _hf_shards(directory):
        state.update({k: v.to(torch.float32) for k, v in load_file(str(shard)).items()})
    base = MistralLM(base_cfg)
    if base_cfg.tie_word_embeddings:
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    missing, unexpected = base.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise in_file(
            directory,
            f"checkpoint does not fit a Llama/Mistral model (missing {missing[:3]}, unexpected {unexpected[:3]})",
        )

    vocab = Vocabulary(codebook_size, tokenizer_hash, n_conditioning, offset=base_cfg.vocab_size)
    cfg = ModelConfig.from_dict({**base_cfg.to_dict(), "vocab_size": vocab.size, "tie_word_embeddings": False})
    model = MistralLM(cfg)
    new_state = base.state_dict()
    gen = torch.Generator().manual_seed(seed)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        old = new_state[name]
        extra = old.mean(0, keepdim=True) + 1e-3 * old.std() * torch.randn(
            vocab.size - old.shape[0], old.shape[1], generator=gen
        )
        new_state[name] = torch.cat([old, extra], dim=0)
    model.load_state_dict(new_state)
    model.vocab = vocab
    model.meta["training"] = {"base": str(directory), "base_vocab_size": base_cfg.vocab_size}
    return model
