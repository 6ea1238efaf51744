"""``mdllm export MODEL_DIR -o MODEL.gguf``: merge LoRA adapters and write GGUF for llama.cpp."""


def register(sub):
    p = sub.add_parser("export", help="merge LoRA and write a GGUF model (f32, f16, q8_0) for llama.cpp")
    p.add_argument("model", help="mdllm model directory (config.json + model.safetensors)")
    p.add_argument("-o", "--out", required=True, help="output .gguf file")
    p.add_argument("--type", default="f16", choices=["f32", "f16", "q8_0"], help="weight type (default f16)")
    p.add_argument("--merged", help="also save the merged PyTorch model to this directory")
    p.add_argument(
        "--check",
        action="store_true",
        help="compare llama.cpp's logits with PyTorch's on a test sequence and print the difference",
    )
    p.set_defaults(run=run)


def run(args):
    import os

    from mdllm.lm import store
    from mdllm.lm.export import merged_copy, write_gguf

    model = store.load(args.model)
    if args.merged:
        store.save(merged_copy(model), args.merged)
    write_gguf(model, args.out, args.type)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, {args.type})")
    if args.check:
        import numpy as np
        import torch

        from mdllm.lm.gguf_eval import gguf_logits

        vocab = model.vocab
        rng = np.random.default_rng(0)
        seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 12))
        key = rng.integers(0, vocab.key_codebook_size, 12) if vocab.key_codebook_size else None
        fine = None
        if vocab.fine_codebook_size:  # a fine code in about a third of the fine slots
            fine = np.where(rng.random((3, 12)) < 0.3, rng.integers(0, vocab.fine_codebook_size, (3, 12)), -1)
        ids, _ = vocab.example(seq, rng.integers(0, vocab.codebook_size, (3, 12)), key_tokens=key, fine=fine)
        with torch.no_grad():
            ref = model(torch.from_numpy(ids)[None])[0].numpy()
        diff = np.abs(gguf_logits(args.out, ids) - ref).max()
        print(f"max |logit difference| llama.cpp vs PyTorch over {len(ids)} tokens: {diff:.3g}")
