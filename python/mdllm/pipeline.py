"""``mdllm run``: from one structure to an evaluated ensemble.

simulate (unless trajectories are given) -> encode -> LoRA fine-tune of the shipped base -> merge and
export GGUF -> generate -> evaluate. Each stage works in its own folder of the output directory and, when
it finishes, writes ``stage.json`` with a key: the hash of its inputs (file contents and the keys of the
stages before it) and its settings. A re-run skips every stage whose key is unchanged; a stage that was
interrupted has no ``stage.json`` and runs again, resuming from its own checkpoints (simulation and
training keep them).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

from mdllm.errors import MdllmError, in_file
from mdllm.files import atomic_output, sha256_file

STAGE_FILE = "stage.json"


@dataclass(frozen=True)
class Preset:
    """Sizes of every stage; see PRESETS."""

    simulate_ns: float  # per temperature
    temperatures: tuple[float, ...]
    save_every_ps: float
    equilibrate_ps: float
    train_steps: int
    train_window: int
    # LoRA rank of the fine-tune, 0: all weights. Rank 16 keeps more of what the base knows: on held-out
    # MD it matched MD's pairwise-distance distribution and fluctuations better than full fine-tuning
    # (bench/results/realism-s12-lora16*.txt against realism-s12*.txt, two seeds).
    lora_rank: int
    micro_batch: int
    frames: int  # generated per walker
    walkers: int
    window: int
    refine: bool  # restrained geometric refinement of decoded frames (mdllm generate --refine)
    rebuild: int  # generated (and as many reference) frames rebuilt all-atom and minimized in evaluation;
    # >= 20 so the sane fraction has a usable 95 % interval (seconds per frame: bench/results/rebuild-*.txt)
    guard: bool = True  # motion tokens: draw a residue or a frame again when the guard rejects it
    # motion tokens: constrained decoding, each residue's draw judged as decoded (mdllm generate --constrain)
    constrain: bool = False
    # motion tokens: frame repair, faulty residues redrawn among the model's likely codes (mdllm generate --repair)
    repair: bool = False
    # of the language model's draws (mdllm generate --temperature); None: the model's default (motion 0.8)
    sampling_temperature: float | None = None
    # motion tokens: frames of a linear surrogate of the trajectories added to the fine-tune (mdllm.lm.surrogate)
    surrogate_frames: int = 0
    # motion tokens: soft fine-tuning targets over neighbouring codes, Gaussian width in Å (mdllm.lm.model.CodeSmoothing)
    code_smoothing_A: float = 0.0


# Fine-tunes keep the weights of the lowest validation loss and stop after this many validations (one
# per pass over the training windows) without a lower one: a fine-tune on a few hundred frames is at
# its best after a few passes and only memorises afterwards (bench/realism.py runs).
FINETUNE_PATIENCE = 5

PRESETS = {
    # 2 CPU cores, a small protein (e.g. chignolin): minutes, not hours.
    "quick": Preset(
        simulate_ns=0.04,
        temperatures=(300.0,),
        save_every_ps=1.0,
        equilibrate_ps=5.0,
        train_steps=40,
        train_window=4,
        lora_rank=16,
        micro_batch=4,
        frames=40,
        walkers=4,
        window=4,
        refine=True,
        rebuild=20,
    ),
    # A laptop (4-8 cores) over lunch.
    "laptop": Preset(
        simulate_ns=2.0,
        temperatures=(300.0, 340.0),
        save_every_ps=10.0,
        equilibrate_ps=100.0,
        train_steps=400,
        train_window=4,
        lora_rank=16,
        micro_batch=8,
        frames=500,
        walkers=8,
        window=4,
        refine=True,
        rebuild=40,
    ),
    # A GPU node (OpenMM CUDA, torch CUDA, llama.cpp offload).
    "gpu": Preset(
        simulate_ns=100.0,
        temperatures=(300.0, 340.0, 380.0),
        save_every_ps=10.0,
        equilibrate_ps=500.0,
        train_steps=3000,
        train_window=8,
        lora_rank=32,
        micro_batch=32,
        frames=5000,
        walkers=64,
        window=8,
        refine=True,
        rebuild=100,
    ),
}


def tree_digest(path) -> str:
    """Digest of a file, or of every file below a folder (names and contents)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(path)).encode())
        digest.update(sha256_file(f).encode())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def generation_code_digest() -> str:
    """sha256 of the code that draws and finishes frames: the compiled core and the package's Python
    files. Part of the generate stage's key, so a changed sampling or constraint rule (or any upgrade)
    generates again instead of reusing frames the old code drew."""
    from mdllm import _core

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(sha256_file(_core.__file__).encode())
    for f in sorted(package.rglob("*.py")):
        digest.update(str(f.relative_to(package)).encode())
        digest.update(sha256_file(f).encode())
    return digest.hexdigest()


class Stage:
    """One cached step of the pipeline."""

    def __init__(self, root: Path, name: str, inputs: dict):
        self.name = name
        self.dir = root / name
        self.inputs = inputs
        self.key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()

    def done(self) -> bool:
        marker = self.dir / STAGE_FILE
        return marker.exists() and json.loads(marker.read_text()).get("key") == self.key

    def run(self, work) -> dict:
        """Run ``work(folder) -> dict of results`` unless already done with the same key; return the results."""
        marker = self.dir / STAGE_FILE
        if self.done():
            print(f"[{self.name}] up to date, skipped")
            return json.loads(marker.read_text())["results"]
        if marker.exists():  # finished before, with other inputs or settings: start clean
            shutil.rmtree(self.dir)
        resumed = self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        print(f"[{self.name}] {'resuming' if resumed else 'running'}")
        t0 = time.perf_counter()
        results = work(self.dir)
        record = {
            "key": self.key,
            "inputs": self.inputs,
            "results": results,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        with atomic_output(marker) as tmp:
            tmp.write_text(json.dumps(record, indent=2, default=str))
        return results


def run(
    start,
    out_dir,
    trajectories=(),
    top=None,
    preset: str | Preset = "quick",
    base=None,
    tokenizer=None,
    seed: int = 0,
    threads: int = 0,
    states: dict | None = None,
    **overrides,
) -> dict:
    """Run every stage; returns a summary (also written to OUT/run.json)."""
    from mdllm.encoding import load_tokenizers
    from mdllm.io import load_backbone
    from mdllm.paths import model_path

    if isinstance(preset, str) and preset not in PRESETS:
        raise MdllmError(f"unknown preset '{preset}' (one of {', '.join(PRESETS)})")
    p = PRESETS[preset] if isinstance(preset, str) else preset
    p = replace(p, **overrides) if overrides else p
    start = Path(start)
    if not start.exists():
        raise in_file(start, "no such start structure")
    start_backbone = load_backbone(start)  # fail early on a bad start structure
    out = Path(out_dir)  # created by the first stage, after every input has been checked
    tok, fold = load_tokenizers(tokenizer)
    base = Path(base) if base else model_path("motion-lm" if tok.needs_key_frame else "structure-lm")
    settings = asdict(p) | {"seed": seed}
    summary = {"start": str(start), "preset": preset if isinstance(preset, str) else "custom", "settings": settings}

    # 1. trajectories: given, or simulated
    if trajectories:
        trajs = [(Path(t), Path(top) if top else None) for t in trajectories]
        for t, tp in trajs:
            load_backbone(t, top=tp)  # fail early, before any long work
        traj_key = {"trajectories": [[tree_digest(t), tree_digest(tp) if tp else None] for t, tp in trajs]}
    else:
        sim = Stage(
            out,
            "simulate",
            {
                "start": sha256_file(start),
                **{k: settings[k] for k in ("simulate_ns", "temperatures", "save_every_ps", "equilibrate_ps", "seed")},
            },
        )
        sim_results = sim.run(lambda d: _simulate(start, d, p, seed, threads))
        trajs = [(Path(t), Path(tp)) for t, tp in sim_results["trajectories"]]
        traj_key = {"simulate": sim.key}

    # 2. encode (motion tokens: relative to the start structure, the key frame of generation too)
    enc = Stage(
        out,
        "encode",
        {
            **traj_key,
            "tokenizer": tok.hash,
            "key": sha256_file(start),
            # the seed draws the surrogate's frames; without them, encoding does not depend on it
            "surrogate": [p.surrogate_frames, seed] if p.surrogate_frames else 0,
        },
    )
    enc_results = enc.run(lambda d: _encode(trajs, tok, fold, start_backbone, d, p.surrogate_frames, seed))

    # 3. fine-tune the base with LoRA
    ft = Stage(
        out,
        "finetune",
        {
            "encode": enc.key,
            "base": tree_digest(base),
            **{
                k: settings[k]
                for k in ("train_steps", "train_window", "lora_rank", "micro_batch", "seed", "code_smoothing_A")
            },
        },
    )
    ft.run(lambda d: _finetune(enc_results["token_files"], base, d, p, seed, threads, tok))

    # 4. merge and export
    ex = Stage(out, "export", {"finetune": ft.key})
    ex_results = ex.run(lambda d: _export(ft.dir, d))

    # 5. generate from the start structure
    gen = Stage(
        out,
        "generate",
        {
            "export": ex.key,
            "decoder": tok.decoder_hash,
            "code": generation_code_digest(),
            "start": sha256_file(start),
            **{
                k: settings[k]
                for k in (
                    "frames",
                    "walkers",
                    "window",
                    "refine",
                    "seed",
                    "guard",
                    "constrain",
                    "repair",
                    "sampling_temperature",
                )
            },
        },
    )
    gen_results = gen.run(lambda d: _generate(ex_results["model"], tok, start, d, p, seed, threads))

    # 6. evaluate against the trajectories the model learned from
    named_states = {"start": str(start), **(states or {})}
    ev = Stage(
        out,
        "evaluate",
        {
            "generate": gen.key,
            **traj_key,
            "rebuild": p.rebuild,
            "states": {k: tree_digest(v) for k, v in named_states.items()},
        },
    )
    evaluated_now = not ev.done()  # a fresh evaluation prints the verdict and the report path itself
    ev_results = ev.run(lambda d: _evaluate(gen_results, trajs[0], named_states, d, p, seed, start, trajs))

    summary.update(
        sequence=start_backbone.sequence,
        trajectories=[str(t) for t, _ in trajs],
        model=ex_results["model"],
        generated=gen_results["trajectory"],
        report=ev_results["report"],
    )
    with atomic_output(out / "run.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    if not evaluated_now:
        print(f"report: {ev_results['report']}")
    return summary


# --- stages ----------------------------------------------------------------------------------


def _simulate(start, d, p: Preset, seed, threads) -> dict:
    from mdllm.simulate import Plan, simulate

    plan = Plan(
        temperatures=tuple(p.temperatures),
        seed=seed,
        length_ns=p.simulate_ns,
        save_every_ps=p.save_every_ps,
        equilibrate_ps=p.equilibrate_ps,
    )
    manifests = simulate(start, d, plan=plan, threads=threads)  # resumes what an interrupted run left
    runs = sorted(path.parent for path in d.glob("*/manifest.json"))
    trajectories = []
    for run_dir in runs:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        trajectories.append([str(run_dir / manifest["trajectory"]), str(run_dir / manifest["topology"])])
    if len(trajectories) != len(manifests) or not trajectories:
        raise MdllmError(f"{d}: simulation did not finish every run; run the same command again to continue")
    return {"trajectories": trajectories}


def _encode(trajs, tok, fold, start, d, surrogate_frames=0, seed=0) -> dict:
    import numpy as np

    from mdllm.encoding import encode_backbone
    from mdllm.io import load_backbone

    make_surrogate = bool(surrogate_frames) and tok.needs_key_frame
    files, fitted = [], []  # fitted: the frames the surrogate is fitted to (kept only when one is made)
    for i, (traj, top) in enumerate(trajs):
        path = d / f"traj{i:03d}.npz"
        backbone = load_backbone(traj, top=top)
        encode_backbone(backbone, tok, key=start, fold_tokenizer=fold).save(path)
        files.append(str(path))
        if make_surrogate:
            fitted.append(backbone.xyz)
    if make_surrogate:
        from mdllm.lm.surrogate import LinearSurrogate

        surrogate = LinearSurrogate.fit(fitted, start.xyz[0])
        xyz = surrogate.sample(surrogate_frames, seed=seed)
        frames = replace(start, xyz=xyz, time=np.arange(surrogate_frames, dtype=np.float64))
        path = d / "surrogate.npz"
        encode_backbone(frames, tok, key=start, fold_tokenizer=fold).save(path)
        files.append(str(path))
    return {"token_files": files}


def _finetune(token_files, base, d, p: Preset, seed, threads, tok) -> dict:
    import torch

    from mdllm.lm.fit import LoraSettings, NewModel, Windows, fit
    from mdllm.lm.train import CHECKPOINT, TrainConfig

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(
        epochs=1000,
        max_steps=p.train_steps,
        micro_batch=p.micro_batch,
        seed=seed,
        checkpoint_every=10,
        keep_best=True,
        patience=FINETUNE_PATIENCE,
        code_smoothing_A=p.code_smoothing_A if tok.needs_key_frame else 0.0,
    )
    result = fit(
        token_files,
        d,
        base=base,
        new=NewModel(motion_tokenizer=str(tok.path)),  # whose codebook the smoothing uses
        lora=LoraSettings(rank=p.lora_rank),
        windows=Windows(window=p.train_window),
        train=cfg,
        resume=(d / CHECKPOINT).exists(),
    )
    return {"model_dir": str(d), "steps": result.steps, "best_val": result.best_val}


def _export(model_dir, d) -> dict:
    from mdllm.lm import store
    from mdllm.lm.export import write_gguf

    model = d / "model.gguf"
    write_gguf(store.load(model_dir), model, "f16")
    return {"model": str(model)}


def _generate(model, tok, start, d, p: Preset, seed, threads) -> dict:
    from mdllm.generate import Generator
    from mdllm.sampling import SamplingParams

    ens = Generator(model, tok, threads=threads).generate(
        start,
        frames=p.frames,
        walkers=p.walkers,
        window=p.window,
        seed=seed,
        refine=p.refine,
        guard=p.guard,
        constrain=p.constrain and tok.needs_key_frame,
        repair=p.repair and tok.needs_key_frame,
        params=None if p.sampling_temperature is None else SamplingParams(temperature=p.sampling_temperature),
    )
    out = d / "generated.xtc"
    ens.save(out)
    return {
        "trajectory": str(out),
        "topology": str(out.with_suffix(".pdb")),
        "mean_frame_loglik": float(ens.frame_loglik.mean()),
        "frames_per_second": ens.info["frames_per_second"],
        "guard": ens.info.get("guard"),
        "constraint": ens.info.get("constraint"),
        "repair": ens.info.get("repair"),
    }


def _evaluate(gen_results, reference, states, d, p: Preset, seed, start=None, trajs=()) -> dict:
    from mdllm.evaluate.verdict import print_verdict
    from mdllm.evaluate.pipeline import EvaluateOptions, evaluate

    ref, ref_top = reference
    # the training frames, so the verdict can tell a new state from a remembered one (one topology for all)
    same_top = len({str(tp) for _, tp in trajs}) == 1
    metrics = evaluate(
        gen_results["trajectory"],
        d,
        top=gen_results["topology"],
        reference=ref,
        reference_top=ref_top,
        states=dict(states),
        options=EvaluateOptions(rebuild_frames=p.rebuild, seed=seed),
        start=start,
        training=[t for t, _ in trajs] if same_top else [ref],
        training_top=trajs[0][1] if same_top and trajs else ref_top,
    )
    print_verdict(metrics, str(d / "report.html"))
    return {"report": str(d / "report.html"), "metrics": str(d / "metrics.json")}
