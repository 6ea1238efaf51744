"""Structure language model: text format, model, HF loading, LoRA, training, resume, DDP."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mdllm.lm as lm  # noqa: E402
from mdllm.errors import MdllmError  # noqa: E402
from mdllm import tokenfile  # noqa: E402
from mdllm.lm.data import load_token_files, windows  # noqa: E402
from mdllm.tokenfile import TokenFile  # noqa: E402
from mdllm.lm.lora import LoRALinear, add_lora, merge_lora  # noqa: E402
from mdllm.lm.text import IGNORE  # noqa: E402
from mdllm.lm.train import TrainConfig, lr_at, train  # noqa: E402

HASH = "0123abcd" * 8
K = 12


def tiny_config(vocab, **kw):
    d = dict(
        vocab_size=vocab.size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    d.update(kw)
    return lm.ModelConfig(**d)


def tiny_model(vocab=None, seed=0, **kw):
    vocab = vocab or lm.Vocabulary(K, HASH)
    torch.manual_seed(seed)
    model = lm.MistralLM(tiny_config(vocab, **kw))
    model.vocab = vocab
    return model


def synthetic_trajectories(tmp_path, n=2, frames=30):
    """Token files with a learnable pattern: every residue keeps its token from frame to frame, with
    an occasional switch, so the next frame is predictable from the previous one."""
    rng = np.random.default_rng(1)
    paths = []
    for i, seq in enumerate(["ACDEF", "GHIKLMN", "PQRSTV"][:n]):
        tokens = np.empty((frames, len(seq)), dtype=np.int32)
        tokens[0] = rng.integers(0, K, len(seq))
        for f in range(1, frames):
            tokens[f] = tokens[f - 1]
            if f % 7 == 0:
                tokens[f, rng.integers(len(seq))] = rng.integers(0, K)
        path = tmp_path / f"traj{i}.npz"
        TokenFile(tokens, seq, HASH, K).save(path)
        paths.append(path)
    return paths


# --- text format ----------------------------------------------------------------------------------


def test_vocabulary_layout_and_example():
    v = lm.Vocabulary(K, HASH, n_conditioning=4)
    strings = v.token_strings()
    assert len(strings) == v.size == 6 + 4 + 21 + K
    assert len(set(strings)) == v.size
    assert strings[v.frame_id] == "<frame>" and strings[v.bos_id] == "<s>"
    assert strings[v.amino_acid_offset] == "A" and strings[v.structure_offset] == "<t_0>"
    assert strings[v.structure_offset + K - 1] == f"<t_{K - 1}>"

    tokens = np.array([[0, 5, 11], [3, 3, 1]])
    ids, targets = v.example("AWZ", tokens, conditioning=(2,))
    prefix = [
        v.bos_id,
        v.seq_start_id,
        v.amino_acid_offset + 0,
        v.amino_acid_offset + 18,
        v.amino_acid_offset + 20,
        v.seq_end_id,
        v.conditioning_id(2),
    ]
    assert ids[:7].tolist() == prefix  # unknown residue Z -> X
    frames = ids[7:].reshape(2, 4)
    assert (frames[:, -1] == v.frame_id).all()
    assert (frames[:, :3] - v.structure_offset == tokens).all()
    assert (targets[:7] == IGNORE).all() and (targets[7:] == ids[7:]).all()
    assert (v.decode_frames(ids[7:], 3) == tokens).all()


def test_vocabulary_refuses_other_tokenizer_and_bad_tokens():
    v = lm.Vocabulary(K, HASH)
    v.check_tokenizer(K, HASH)
    with pytest.raises(MdllmError, match="tokenizer"):
        v.check_tokenizer(K, "f" * 64)
    with pytest.raises(MdllmError, match="tokenizer"):
        v.check_tokenizer(K + 1, HASH)
    with pytest.raises(MdllmError, match="outside"):
        v.frames(np.array([[0, K]]))
    with pytest.raises(MdllmError, match="residues"):
        v.example("ACD", np.zeros((2, 4), dtype=int))
    with pytest.raises(MdllmError, match="separator"):
        v.decode_frames(np.full(8, v.structure_offset), 3)
    assert lm.Vocabulary.from_dict(v.to_dict()) == v


def test_token_files_round_trip_and_errors(tmp_path):
    paths = synthetic_trajectories(tmp_path)
    t = tokenfile.load(paths[0])
    assert t.tokens.shape == (30, 5) and t.sequence == "ACDEF" and t.codebook_size == K
    other = tmp_path / "other.npz"
    TokenFile(np.zeros((3, 5), np.int32), "ACDEF", "e" * 64, K).save(other)
    with pytest.raises(MdllmError, match="other.npz.*tokenizer"):
        load_token_files([paths[0], other])
    model = tiny_model()
    with pytest.raises(MdllmError, match="tokenizer"):
        model.check_tokenizer(K, "e" * 64, source=str(other))
    bad = tmp_path / "bad.npz"
    np.savez(bad, tokens=np.zeros((3, 4), np.int32), sequence=np.array("ACDEF"))
    with pytest.raises(MdllmError, match="bad.npz.*lacks"):
        tokenfile.load(bad)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(MdllmError, match="junk.npz"):
        tokenfile.load(tmp_path / "junk.npz")


def test_windows_split_in_time(tmp_path):
    v = lm.Vocabulary(K, HASH)
    trajs = load_token_files(synthetic_trajectories(tmp_path))
    train_ex, val_ex = windows(trajs, v, window=4, stride=2, val_fraction=0.2)
    # 30 frames: 24 training frames -> starts 0,2,...,20 (11); 6 validation frames -> starts 0, 2 (2)
    assert len(train_ex) == 2 * 11 and len(val_ex) == 2 * 2
    ids, _ = train_ex[0]
    assert len(ids) == len(v.prefix("ACDEF")) + 4 * 6


# --- model ----------------------------------------------------------------------------------------


def test_model_is_causal_and_names_are_hf_style():
    model = tiny_model().eval()
    names = set(model.state_dict())
    for n in (
        "model.embed_tokens.weight",
        "model.layers.1.self_attn.q_proj.weight",
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight",
        "model.norm.weight",
        "lm_head.weight",
    ):
        assert n in names
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (2 * 8, 32)  # 2 kv heads of dim 8
    ids = torch.randint(0, model.config.vocab_size, (1, 20))
    changed = ids.clone()
    changed[0, 12] = (changed[0, 12] + 1) % model.config.vocab_size
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[0, :12], b[0, :12], atol=1e-6)
    assert not torch.allclose(a[0, 12:], b[0, 12:], atol=1e-4)


def test_sliding_window_limits_attention():
    model = tiny_model(sliding_window=4, num_hidden_layers=1).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, 16))
    changed = ids.clone()
    changed[0, 2] = (changed[0, 2] + 1) % model.config.vocab_size
    with torch.no_grad():
        a, b = model(ids), model(changed)
    # one layer, window 4: position 2 is seen by positions 2..5 only
    assert not torch.allclose(a[0, 5], b[0, 5], atol=1e-5)
    assert torch.allclose(a[0, 6:], b[0, 6:], atol=1e-6)


def test_save_load_round_trip(tmp_path):
    model = tiny_model().eval()
    lm.save(model, tmp_path / "m")
    loaded = lm.load(tmp_path / "m")
    assert loaded.vocab == model.vocab and loaded.config == model.config
    ids = torch.randint(0, model.config.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(ids), loaded(ids))
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(MdllmError, match="config.json"):
        lm.load(tmp_path / "m")


def _write_hf_checkpoint(directory, tie=False):
    """A tiny random Mistral checkpoint in Hugging Face layout: config.json, two bf16 safetensors
    shards and the shard index."""
    from safetensors.torch import save_file

    directory.mkdir()
    hf_config = {
        "model_type": "mistral",
        "architectures": ["MistralForCausalLM"],
        "vocab_size": 50,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1e6,
        "sliding_window": None,
        "tie_word_embeddings": tie,
        "torch_dtype": "bfloat16",
    }
    (directory / "config.json").write_text(json.dumps(hf_config))
    gen = torch.Generator().manual_seed(3)
    shapes = {"model.embed_tokens.weight": (50, 32), "model.norm.weight": (32,)}
    if not tie:
        shapes["lm_head.weight"] = (50, 32)
    for i in range(2):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "self_attn.q_proj.weight": (32, 32),
                p + "self_attn.k_proj.weight": (8, 32),
                p + "self_attn.v_proj.weight": (8, 32),
                p + "self_attn.o_proj.weight": (32, 32),
                p + "mlp.gate_proj.weight": (48, 32),
                p + "mlp.up_proj.weight": (48, 32),
                p + "mlp.down_proj.weight": (32, 48),
                p + "input_layernorm.weight": (32,),
                p + "post_attention_layernorm.weight": (32,),
            }
        )
    tensors = {
        k: (torch.randn(s, generator=gen) * 0.1 + (1.0 if len(s) == 1 else 0.0)).to(torch.bfloat16)
        for k, s in shapes.items()
    }
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(directory / shard))
        weight_map.update({k: shard for k in keys})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return tensors


@pytest.mark.parametrize("tie", [False, True])
def test_hf_checkpoint_loads_and_extends_vocabulary(tmp_path, tie):
    tensors = _write_hf_checkpoint(tmp_path / "hf", tie=tie)
    model = lm.load_hf(tmp_path / "hf", K, HASH)
    v = model.vocab
    assert v.offset == 50 and model.config.vocab_size == v.size == 50 + 6 + 8 + 21 + K
    assert model.config.num_key_value_heads == 1 and model.config.rope_theta == 1e6
    emb = model.model.embed_tokens.weight
    assert torch.equal(emb[:50], tensors["model.embed_tokens.weight"].float())
    q = model.model.layers[1].self_attn.q_proj.weight
    assert torch.equal(q, tensors["model.layers.1.self_attn.q_proj.weight"].float())
    head = tensors["model.embed_tokens.weight" if tie else "lm_head.weight"].float()
    assert torch.equal(model.lm_head.weight[:50], head)
    # the base vocabulary's predictions are untouched by the extension
    base = lm.MistralLM(lm.ModelConfig(**{**model.config.to_dict(), "vocab_size": 50}))
    state = {k: v_.float() for k, v_ in tensors.items()}
    state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    base.load_state_dict(state)
    ids = torch.randint(0, 50, (1, 10))
    with torch.no_grad():
        assert torch.allclose(model(ids)[..., :50], base(ids), atol=1e-5)
    # and the extended model is an ordinary mdllm model that round-trips
    lm.save(model, tmp_path / "ext")
    assert lm.load(tmp_path / "ext").vocab.offset == 50


def test_hf_checkpoint_errors(tmp_path):
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(MdllmError, match="llama or mistral"):
        lm.load_hf(tmp_path / "gpt", K, HASH)
    with pytest.raises(MdllmError, match="config.json"):
        lm.load_hf(tmp_path / "none", K, HASH)


# --- LoRA -----------------------------------------------------------------------------------------


def test_lora_trains_only_adapters_and_merges_exactly():
    model = tiny_model()
    wrapped = add_lora(model, rank=4, alpha=8, targets=("q_proj", "v_proj", "down_proj"))
    assert len(wrapped) == 6
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert isinstance(model.model.layers[0].self_attn.q_proj, LoRALinear)
    with torch.no_grad():  # give the adapters non-zero weights, as after training
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.2)
    model.eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 15))
    with torch.no_grad():
        unmerged = model(ids)
        base_only = model.model.layers[0].self_attn.q_proj.base(torch.ones(1, 32))
        n = merge_lora(model)
        merged = model(ids)
    assert n == 6 and not any(isinstance(m, LoRALinear) for m in model.modules())
    assert (merged - unmerged).abs().max().item() <= 1e-5
    assert not torch.allclose(model.model.layers[0].self_attn.q_proj(torch.ones(1, 32)), base_only)
    with pytest.raises(MdllmError, match="unknown LoRA target"):
        add_lora(tiny_model(), 2, 4, targets=("qkv",))


def test_lora_model_saves_and_loads(tmp_path):
    model = tiny_model()
    add_lora(model, 2, 4, targets=("q_proj",))
    model.meta["lora"] = {"rank": 2, "alpha": 4, "dropout": 0.0, "targets": ["q_proj"]}
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.lora_B.fill_(0.3)
    lm.save(model.eval(), tmp_path / "lora")
    loaded = lm.load(tmp_path / "lora")
    assert isinstance(loaded.model.layers[0].self_attn.q_proj, LoRALinear)
    ids = torch.randint(0, model.config.vocab_size, (1, 8))
    with torch.no_grad():
        assert torch.equal(model(ids), loaded(ids))


# --- training -------------------------------------------------------------------------------------


def test_learning_rate_schedule():
    cfg = TrainConfig(lr=1e-3, warmup_steps=4, min_lr_ratio=0.1)
    lrs = [lr_at(s, 20, cfg) for s in range(21)]
    assert lrs[0] == pytest.approx(2.5e-4) and lrs[3] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    assert lrs[20] == pytest.approx(1e-4)


def test_training_warns_when_the_data_cannot_carry_it(tmp_path):
    v = lm.Vocabulary(K, HASH)
    trajs = load_token_files(synthetic_trajectories(tmp_path))
    train_ex, _ = windows(trajs, v, window=3, stride=1, val_fraction=0.0)
    few = train_ex[:5]
    with pytest.warns(UserWarning) as caught:
        train(
            tiny_model(v),
            few,
            [],
            tmp_path / "run",
            TrainConfig(max_steps=1, micro_batch=8, lr=3e-3, warmup_steps=10, progress=False),
        )
    messages = " | ".join(str(w.message) for w in caught)
    assert "only 5 training windows" in messages
    assert "no validation windows" in messages
    assert "warm-up (10 steps) is as long as the whole run (1 steps)" in messages


@pytest.fixture
def synthetic_windows(tmp_path):
    """(vocabulary, training windows, validation windows) of the synthetic trajectories, window 3."""
    torch.set_num_threads(1)
    v = lm.Vocabulary(K, HASH)
    trajs = load_token_files(synthetic_trajectories(tmp_path))
    return (v, *windows(trajs, v, window=3, stride=1, val_fraction=0.2))


def test_keep_best_ends_with_the_lowest_validation_loss(tmp_path, synthetic_windows):
    from mdllm.lm.train import evaluate, init_distributed

    v, train_ex, val_ex = synthetic_windows
    model = tiny_model(v)
    # a learning rate far too high: the validation loss goes up and down, so the last step is not the best
    hist = train(
        model,
        train_ex,
        val_ex,
        tmp_path / "run",
        TrainConfig(max_steps=12, micro_batch=8, lr=0.3, warmup_steps=1, eval_every=1, keep_best=True, progress=False),
    )
    losses = [e["val_loss"] for e in hist["val"]]
    assert losses[-1] > min(losses)  # the scenario this test is about
    assert hist["best_val"]["val_loss"] == min(losses)
    assert hist["best_val"]["step"] == hist["val"][losses.index(min(losses))]["step"]
    again = evaluate(model, val_ex, v.pad_id, 8, init_distributed(), torch.device("cpu"))["val_loss"]
    assert again == pytest.approx(min(losses), rel=1e-5)


def test_training_lowers_validation_loss(tmp_path, synthetic_windows):
    v, train_ex, val_ex = synthetic_windows
    model = tiny_model(v)
    hist = train(
        model,
        train_ex,
        val_ex,
        tmp_path / "run",
        TrainConfig(epochs=6, micro_batch=8, lr=3e-3, warmup_steps=3, progress=False),
    )
    first, last = hist["val"][0], hist["val"][-1]
    assert last["val_loss"] < 0.6 * first["val_loss"]
    assert last["val_accuracy"] > 0.5
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    assert json.loads((tmp_path / "run" / "history.json").read_text())["train"][-1]["step"] == len(hist["train"])


class Interrupt(Exception):
    pass


def test_resume_continues_exactly(tmp_path):
    torch.set_num_threads(1)
    v = lm.Vocabulary(K, HASH)
    trajs = load_token_files(synthetic_trajectories(tmp_path))
    train_ex, val_ex = windows(trajs, v, window=3, stride=2, val_fraction=0.2)

    # LoRA with dropout: the resumed run must also reproduce the dropout noise
    def fresh():
        model = tiny_model(v, seed=5)
        add_lora(model, 2, 4, dropout=0.1, targets=("q_proj", "v_proj", "up_proj"))
        return model

    cfg = TrainConfig(
        epochs=3, micro_batch=4, grad_accum=2, lr=1e-2, warmup_steps=2, checkpoint_every=2, progress=False
    )
    whole = fresh()
    h_whole = train(whole, train_ex, val_ex, tmp_path / "a", cfg)
    n_steps = len(h_whole["train"])
    assert n_steps == 3 * 3

    def stop_at_5(step):
        if step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(fresh(), train_ex, val_ex, tmp_path / "b", cfg, on_step=stop_at_5)
    resumed = fresh()  # new process: new model, state from the step-4 checkpoint
    h_res = train(resumed, train_ex, val_ex, tmp_path / "b", cfg, resume=True)
    assert [e["step"] for e in h_res["train"]] == list(range(1, n_steps + 1))
    assert [e["loss"] for e in h_res["train"]] == [e["loss"] for e in h_whole["train"]]
    assert [e["val_loss"] for e in h_res["val"]] == [e["val_loss"] for e in h_whole["val"]]
    for (n, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), n


def _cli(args, nproc=1, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    if nproc == 1:
        cmd = [sys.executable, "-m", "mdllm", "--threads", "1", "train", *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "mdllm",
            "--threads",
            "1",
            "train",
            *args,
        ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, **kw)


def test_ddp_two_processes_match_single_process(tmp_path):
    from safetensors.torch import load_file

    paths = [str(p) for p in synthetic_trajectories(tmp_path, n=3)]
    common = [
        *paths,
        "--preset",
        "tiny",
        "--window",
        "2",
        "--stride",
        "3",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--micro-batch",
        "2",
        "--lr",
        "1e-2",
        "--warmup",
        "1",
        "--no-progress",
    ]
    single = _cli([*common, "-o", str(tmp_path / "single"), "--grad-accum", "2"])
    assert single.returncode == 0, single.stderr
    ddp = _cli([*common, "-o", str(tmp_path / "ddp"), "--grad-accum", "1"], nproc=2)
    assert ddp.returncode == 0, ddp.stderr
    h1 = json.loads((tmp_path / "single" / "history.json").read_text())
    h2 = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert h1["global_batch"] == h2["global_batch"] == 4 and h2["world_size"] == 2
    for a, b in zip(h1["train"], h2["train"]):
        assert a["tokens"] == b["tokens"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    w1 = load_file(str(tmp_path / "single" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    worst = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert worst < 1e-4
    # and training did move the weights (the comparison is not between two untouched models)
    untrained = tiny_model_like(tmp_path / "single")
    assert max((w1[k] - untrained[k]).abs().max().item() for k in w1) > 1e-3


def tiny_model_like(directory):
    model = lm.load(directory)
    torch.manual_seed(0)  # the CLI seeds with --seed (default 0) before building the model
    fresh = lm.MistralLM(model.config)
    return fresh.state_dict()


def test_cli_refuses_mismatched_tokenizer(tmp_path):
    paths = synthetic_trajectories(tmp_path, n=1)
    other = tmp_path / "other.npz"
    TokenFile(np.zeros((4, 5), np.int32), "ACDEF", "9" * 64, K).save(other)
    r = _cli([str(paths[0]), str(other), "-o", str(tmp_path / "out"), "--preset", "tiny"])
    assert r.returncode == 1
    assert "other.npz" in r.stderr and "tokenizer" in r.stderr
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_cli_trains_and_refuses_to_overwrite_a_run(tmp_path):
    paths = [str(p) for p in synthetic_trajectories(tmp_path, n=1)]
    args = [
        *paths,
        "-o",
        str(tmp_path / "out"),
        "--preset",
        "tiny",
        "--window",
        "2",
        "--max-steps",
        "2",
        "--no-progress",
    ]
    assert _cli(args).returncode == 0
    model = lm.load(tmp_path / "out")
    assert model.meta["training"]["sequences"] == ["ACDEF"] and model.meta["training"]["steps"] == 2
    again = _cli(args)
    assert again.returncode == 1 and "--resume" in again.stderr
    resumed = _cli([*args, "--resume"])  # already at its last step: nothing to do, model saved again
    assert resumed.returncode == 0, resumed.stderr


def test_patience_stops_once_validation_stops_improving(tmp_path, synthetic_windows):
    """keep_best + patience: training ends `patience` validations after the lowest validation loss, with
    those weights; the same run without patience goes on to max_steps."""
    v, train_ex, val_ex = synthetic_windows
    cfg = dict(
        epochs=100, max_steps=40, micro_batch=8, lr=0.3, warmup_steps=1, eval_every=1, keep_best=True, progress=False
    )
    full = train(tiny_model(v), train_ex, val_ex, tmp_path / "full", TrainConfig(**cfg))
    stopped = train(tiny_model(v), train_ex, val_ex, tmp_path / "stop", TrainConfig(patience=2, **cfg))
    end = stopped["stopped_early"]
    assert end == stopped["best_val"]["step"] + 2 < 40  # one validation per step here
    assert len(stopped["train"]) == end and len(full["train"]) == 40
    # the same run up to there (same seed), so the best is the lowest loss the full run had by then
    losses = [e["val_loss"] for e in full["val"] if e["step"] <= end]
    assert stopped["best_val"]["val_loss"] == pytest.approx(min(losses), rel=1e-6)
    assert "stopped_early" not in full
