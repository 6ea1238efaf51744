"""A random-weight structure LM of a chosen shape, with the shipped model's vocabulary, as GGUF: for
timing the generation loop on models whose weights, not attention, dominate the cost per token (as in
MD-LLM's 7B model). Its tokens are meaningless; only its speed is of interest. Not shipped.

Usage: python bench/wide_model.py -o build/wide.gguf [--hidden 1024] [--layers 4] [--heads 8]
       [--kv-heads 2] [--ffn 3584] [--dtype f16]
       python bench/generate.py --model build/wide.gguf
"""

import argparse
import json

import torch

from mdllm.lm import store
from mdllm.lm.export import write_gguf
from mdllm.paths import model_path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True, help="GGUF file to write")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=3584)
    ap.add_argument("--dtype", default="f16", choices=["f32", "f16", "q8_0"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    shipped = json.loads((model_path("structure-lm") / "config.json").read_text())
    shape = {
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads,
        "intermediate_size": args.ffn,
    }
    torch.manual_seed(args.seed)
    model = store.build({**shipped, "model": {**shipped["model"], **shape}, "lora": None, "training": None})
    n_params = sum(p.numel() for p in model.parameters())
    write_gguf(model, args.output, args.dtype, name="mdllm random-weight timing model")
    print(f"wrote {args.output}: {n_params / 1e6:.1f} M parameters, {shape}")


if __name__ == "__main__":
    main()
