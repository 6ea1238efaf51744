"""Generation: a GGUF structure language model continues a trajectory, frame by frame, in llama.cpp.

The start structure (or the last ``window`` frames of a start trajectory) is encoded with the
model's structure tokenizer and becomes the context after the sequence prefix. With motion tokens the
start structure's last frame is the key frame: every token is a residue's displacement from it, and
its fold (torsion codes) follows the sequence in the prompt. The C++ core runs the rolling window
(KV-cache shifting), the constrained sampler and many walkers in one llama.cpp batch, and asks the
guard (``FrameGuard``) about every frame before it enters the context: a frame with a broken chain,
clashing CA atoms, a collapsed or swollen radius of gyration or lost native contacts is drawn again
(bounded tries). This module checks inputs, decodes the tokens back to backbones and writes the
results.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file
from mdllm.evaluate.plausibility import GlobalLimits
from mdllm.evaluate.validity import radius_of_gyration_A
from mdllm.files import atomic_output, sha256_file
from mdllm.io import Backbone, load_backbone, save
from mdllm.lm import gguf_keys
from mdllm.sampling import SamplingParams
from mdllm.sampling.constraint import ConstraintLimits
from mdllm.sampling.repair import RepairLimits
from mdllm.tokenfile import TokenFile


def _core_with_llama():
    from mdllm import _core

    if not getattr(_core, "has_llama", False):
        raise MdllmError(
            "this mdllm was built without llama.cpp, so it cannot generate; reinstall it with llama-cpp-python present"
        )
    return _core


@dataclass
class Ensemble:
    """Generated trajectories of ``walkers`` independent walkers.

    backbones (walkers, frames, L, 4, 3) nm; tokens (walkers, frames, L) structure codes;
    token_logprobs (walkers, frames, L + 1) natural-log probabilities of each chosen token (the last
    column is the frame separator) under the unmodified model distribution. A model with fine codes
    (mdllm.tokenizer.motion_fine) also gives ``fine`` (walkers, frames, L; -1 where a residue has none)
    and their ``fine_logprobs`` (0 where none).
    """

    backbones: np.ndarray
    tokens: np.ndarray
    token_logprobs: np.ndarray
    sequence: str
    info: dict = field(default_factory=dict)
    valid: np.ndarray | None = None  # (walkers, frames) acceptable frames (local and global checks), when filtering
    key_xyz: np.ndarray | None = None  # (L, 4, 3) nm: the key frame of motion tokens
    redraws: np.ndarray | None = None  # (walkers, frames): draws of each frame the guard rejected
    chain_ids: np.ndarray | None = None  # (L,) of the start structure (None: one chain A)
    residue_ids: np.ndarray | None = None
    fine: np.ndarray | None = None  # (walkers, frames, L) fine codes, -1 where none
    fine_logprobs: np.ndarray | None = None

    def check(self, start_xyz=None) -> None:
        """Judge every frame with :func:`mdllm.evaluate.check_backbone` (local checks) and, against the
        start structure (``start_xyz`` (L, 4, 3) nm, else the key frame), the global checks of
        :mod:`mdllm.evaluate.plausibility`: the same definition of an acceptable frame as ``mdllm
        evaluate`` without a reference. ``save`` then writes only the acceptable frames (tokens and
        likelihoods of all frames stay in OUT.tokens.npz with the mask)."""
        from mdllm.evaluate import check_backbone
        from mdllm.evaluate.plausibility import GlobalCheck

        frames = self.backbone()
        report = check_backbone(frames)
        valid = report.valid
        reasons: dict[str, int] = {}
        for frame_reasons in report.reasons:
            for reason in frame_reasons:
                kind = reason.split(":", 1)[0]
                reasons[kind] = reasons.get(kind, 0) + 1
        start = start_xyz if start_xyz is not None else self.key_xyz
        acceptable = valid
        if start is not None:
            plausible, global_reasons, _ = GlobalCheck(start).check(frames.xyz)
            acceptable = valid & plausible
            for frame_reasons in global_reasons:
                for kind in {r.split(":", 1)[0] for r in frame_reasons}:
                    reasons[kind] = reasons.get(kind, 0) + 1
        self.valid = acceptable.reshape(self.tokens.shape[:2])
        self.info["validity"] = {
            "valid_frames": int(valid.sum()),
            "acceptable_frames": int(acceptable.sum()),
            "frames": int(valid.size),
            "invalid_reasons": reasons,
            "global_checks": start is not None,
        }

    @property
    def frame_loglik(self) -> np.ndarray:
        """(walkers, frames) log-likelihood of each generated frame (its tokens, fine tokens and separator)."""
        total = self.token_logprobs.sum(axis=-1)
        return total if self.fine_logprobs is None else total + self.fine_logprobs.sum(axis=-1)

    def backbone(self, walker: int | None = None, only_valid: bool = False) -> Backbone:
        """One walker's trajectory, or all walkers one after another (walker-major); with
        ``only_valid`` the frames that failed :meth:`check` are left out."""
        xyz = self.backbones if walker is None else self.backbones[walker : walker + 1]
        if only_valid and self.valid is not None:
            keep = self.valid if walker is None else self.valid[walker : walker + 1]
            return self._as_backbone(xyz[keep])
        return self._as_backbone(xyz.reshape(-1, *xyz.shape[2:]))

    def _as_backbone(self, xyz) -> Backbone:
        if self.chain_ids is None:
            return Backbone.from_xyz(xyz, self.sequence)
        return Backbone(xyz, self.sequence, self.residue_ids, self.chain_ids, np.arange(len(xyz), dtype=np.float64))

    def save(self, out) -> list[Path]:
        """Write OUT (.dcd/.xtc/.pdb/.h5, walkers one after another; only valid frames after
        :meth:`check`) with a topology PDB, OUT.tokens.npz (tokens, log-likelihoods, validity mask)
        and OUT.json (model, parameters, timing, validity counts)."""
        out = Path(out)
        stem = out.with_suffix("")
        kept = self.backbone(only_valid=True)
        if kept.n_frames == 0:
            raise MdllmError(
                f"{out}: no generated frame passed the validity checks; nothing to write "
                f"(reasons: {self.info.get('validity', {}).get('invalid_reasons')})"
            )
        written = save(kept, out)
        npz = TokenFile(
            self.tokens,
            self.sequence,
            self.info.get("tokenizer_hash", ""),
            self.info.get("codebook_size", 0),
            key_xyz=self.key_xyz,
            residue_ids=self.residue_ids,
            chain_ids=self.chain_ids,
            token_logprobs=self.token_logprobs,
            loglik=self.frame_loglik,
            valid=self.valid,
            redraws=self.redraws,
            fine=self.fine,
            fine_hash=self.info.get("fine_hash", ""),
            fine_codebook_size=self.info.get("fine_codebook_size", 0),
            fine_logprobs=self.fine_logprobs,
        ).save(stem.with_name(stem.name + ".tokens.npz"), compress=True)
        meta = stem.with_name(stem.name + ".json")
        with atomic_output(meta) as tmp:
            tmp.write_text(json.dumps(self.info, indent=2))
        return written + [npz, meta]


@dataclass(frozen=True)
class GuardLimits:
    """What the guard rejects (distances in Å). Thermal MD keeps consecutive CA-CA distances within
    about 0.3 Å of the start structure's. Compaction and native contacts are judged as ``mdllm
    evaluate`` and ``--filter`` judge them without a reference (:class:`mdllm.evaluate.plausibility.GlobalCheck`
    of the key frame), unless ``rg_ratio`` overrides the radius-of-gyration band."""

    ca_ca_tolerance_A: float = 0.8  # consecutive CA-CA distance this far from the key frame's: a break
    ca_clash_A: float = 3.0  # CA atoms 3 or more residues apart closer than this: a clash
    rg_ratio: tuple[float, float] | None = None  # CA radius of gyration relative to the key frame's
    native_contacts: bool = True  # reject frames below the fraction of native contacts of a folded chain
    global_limits: GlobalLimits = GlobalLimits()
    max_tries: int = 4  # new draws of a rejected frame; the last draw is kept
    # Chain continuity residue by residue: a drawn code that puts its CA more than
    # residue_ca_ca_tolerance_A off the key's CA-CA distance to the residue before it (as placed, before
    # projection and refinement) is drawn again at once without such codes, instead of the whole frame
    # (mdllm.sampling.constraint.link_limits). 2 Å would send back 0-1.5 % of the codes of real MD frames
    # (their quantisation error; Trp-cage, BBA, villin, AdK transitions) and 3-7 % of a model's draws.
    residue_redraw: bool = True
    residue_ca_ca_tolerance_A: float = 2.0

    def link_constraint(self, codebook, key_xyz, sequence: str, chain_ids=None):
        """The residue-level rule as a :class:`mdllm.sampling.constraint.ChainConstraint` (links only)."""
        from mdllm.sampling.constraint import ChainConstraint, link_limits

        return ChainConstraint(
            codebook, key_xyz, sequence, chain_ids, link_limits(self.residue_ca_ca_tolerance_A / 10.0)
        )


class FrameGuard:
    """Checks decoded frames of motion tokens against the key frame: chain continuity (each
    consecutive pair bonded in the key), CA clashes, compaction and native contacts (the global checks
    of ``mdllm evaluate``). Counts rejections by reason."""

    def __init__(self, key_xyz, limits: GuardLimits = GuardLimits()):
        from mdllm.evaluate.plausibility import GlobalCheck, rg_unfolded_threshold_A

        self.limits = limits
        ca = np.asarray(key_xyz, np.float64)[:, 1] * 10.0
        d = np.linalg.norm(ca[1:] - ca[:-1], axis=-1)
        self.bonded = d < 4.2  # chain breaks and chain ends of the key stay free
        self.key_link = d
        n = len(ca)
        i, j = np.triu_indices(n, k=3)
        far = np.linalg.norm(ca[i] - ca[j], axis=-1) >= limits.ca_clash_A  # pairs already close in the key stay free
        self.pairs = (i[far], j[far])
        self.key_rg = radius_of_gyration_A(np.asarray(key_xyz)[None])[0]
        # A key frame that is itself less compact than a folded chain of its length (an unfolded start)
        # is not held to that expectation: the guard cannot enforce a fold the start does not have.
        self.global_check = GlobalCheck(
            key_xyz, limits=limits.global_limits, length_expectation=bool(self.key_rg <= rg_unfolded_threshold_A(n))
        )
        if limits.rg_ratio is not None:
            self.rg_band = (limits.rg_ratio[0] * self.key_rg, limits.rg_ratio[1] * self.key_rg)
        else:
            self.rg_band = self.global_check.rg_band
        self.reasons = {"chain_break": 0, "ca_clash": 0, "compaction": 0, "native_contacts": 0}

    def check(self, xyz) -> np.ndarray:
        """(N, L, 4, 3) nm -> (N,) bool: True where the frame is accepted."""
        from mdllm.evaluate.plausibility import fraction_native_contacts

        ca = np.asarray(xyz, np.float64)[:, :, 1] * 10.0
        link = np.linalg.norm(ca[:, 1:] - ca[:, :-1], axis=-1)
        broken = (np.abs(link - self.key_link) > self.limits.ca_ca_tolerance_A)[:, self.bonded].any(axis=1)
        i, j = self.pairs
        clash = np.zeros(len(ca), bool)
        for start in range(0, len(i), 200_000):  # bounded memory for long chains
            a, b = i[start : start + 200_000], j[start : start + 200_000]
            clash |= (np.linalg.norm(ca[:, a] - ca[:, b], axis=-1) < self.limits.ca_clash_A).any(axis=1)
        rg = radius_of_gyration_A(xyz)
        swollen = ~((rg >= self.rg_band[0]) & (rg <= self.rg_band[1]))
        unfolded = np.zeros(len(ca), bool)
        if self.limits.native_contacts:
            q = fraction_native_contacts(xyz, self.global_check.contacts, self.limits.global_limits)
            unfolded = ~(q >= self.global_check.q_min)
        self.reasons["chain_break"] += int(broken.sum())
        self.reasons["ca_clash"] += int(clash.sum())
        self.reasons["compaction"] += int(swollen.sum())
        self.reasons["native_contacts"] += int(unfolded.sum())
        return ~(broken | clash | swollen | unfolded)


class _Finisher:
    """Tokens of one generation -> the frames the user gets: decoded and, when refining, refined
    (mdllm.geometry.refine, compiled core). The guard asks for the frames of every draw it judges; the
    last draw of each walker is what the frame keeps, so the guard's work is kept frame by frame
    (:meth:`commit`) and the final frames are not decoded and refined a second time."""

    def __init__(self, generator, key_xyz, sequence: str, refine: bool):
        self.generator, self.key_xyz, self.sequence, self.refine = generator, key_xyz, sequence, refine
        self.decode_seconds = self.refine_seconds = 0.0
        self.current: dict[int, tuple] = {}  # walker -> (codes, frame, raw) of its latest draw
        self.committed: list[tuple] = []  # per finished frame: (codes, frames, raw), walkers first
        self.reused = 0

    def _finish(self, codes, progress: bool = False, fine=None):
        t0 = time.perf_counter()
        raw = self.generator.decode(codes, self.key_xyz, self.sequence, fine=fine)
        self.decode_seconds += time.perf_counter() - t0
        if not self.refine:
            return raw, raw
        from mdllm.geometry.refine import refine_backbones

        t0 = time.perf_counter()
        flat = raw.reshape(-1, *raw.shape[-3:])
        done = refine_backbones(flat, self.sequence, progress=progress).reshape(raw.shape)
        self.refine_seconds += time.perf_counter() - t0
        return done, raw

    def frames(self, frame_tokens, rows, frame_fine=None) -> np.ndarray:
        """Frames (len(rows), L, 4, 3) nm of the walkers ``rows`` of one draw (structure-token ids, and
        fine-token ids with fine codes)."""
        codes = frame_tokens[rows] - self.generator.vocab.structure_offset
        fine = None if frame_fine is None else self.generator.fine_codes_of(frame_fine[rows])
        done, raw = self._finish(codes, fine=fine)
        for i, (w, d, r) in enumerate(zip(rows, done, raw)):
            self.current[int(w)] = (codes[i] if fine is None else np.stack([codes[i], fine[i]]), d, r)
        return done

    def commit(self) -> None:
        """A frame is finished: every walker's latest draw is final."""
        if self.current:
            walkers = sorted(self.current)
            self.committed.append(tuple(np.stack([self.current[w][k] for w in walkers]) for k in range(3)))
            self.current = {}

    def all_frames(self, codes, progress: bool = False, fine=None):
        """(frames, raw frames), each (walkers, frames, L, 4, 3) nm, of the whole generation's structure
        codes (walkers, frames, L) and fine codes (same shape, with fine codes)."""
        if len(self.committed) == codes.shape[1]:
            kept_codes, done, raw = (np.stack(parts, axis=1) for parts in zip(*self.committed))
            both = codes if fine is None else np.stack([codes, fine], axis=2)
            if kept_codes.shape == both.shape and np.array_equal(kept_codes, both):
                self.reused = int(codes.shape[0] * codes.shape[1])
                return done, raw
        return self._finish(codes, progress=progress, fine=fine)


# Default sampling temperature of motion-token models. On held-out MD (bench/realism.py, four proteins,
# two fine-tune seeds) 0.8 kept the worst protein's motion pattern (NTL9 RMSF r 0.50-0.59 at 1.0 with the
# guard, 0.61-0.70 at 0.8) and the others within noise; torsion models keep their own distribution (1.0).
MOTION_SAMPLING_TEMPERATURE = 0.8  # C++: mdllm::generation::kMotionSamplingTemperature


def default_temperature(motion: bool) -> float:
    """Sampling temperature of a model read without :class:`SamplingParams`: ``MOTION_SAMPLING_TEMPERATURE``
    for motion tokens, 1.0 (the model's own distribution) for torsion tokens."""
    return MOTION_SAMPLING_TEMPERATURE if motion else 1.0


class Generator:
    """A GGUF model and its structure tokenizer, loaded once for many generate/score calls."""

    def __init__(self, model_path, tokenizer=None, gpu_layers: int = 0, threads: int = 0, fold_tokenizer=None):
        from mdllm.encoding import load_tokenizers
        from mdllm.lm.text import Vocabulary  # numpy only

        core = _core_with_llama()
        self.path = Path(model_path)
        if not self.path.is_file():
            raise in_file(self.path, "no such model file")
        try:
            self.llama = core.LlamaModel(str(self.path), gpu_layers=gpu_layers, threads=threads)
        except RuntimeError as exc:
            raise in_file(self.path, f"not a loadable GGUF model ({exc})") from None
        config = self.llama.metadata(gguf_keys.CONFIG)
        if not config:
            raise in_file(self.path, "GGUF has no mdllm metadata; export it with `mdllm export`")
        self.config = json.loads(config)
        self.vocab = Vocabulary.from_dict(self.config["vocab"])
        if self.llama.vocab_size != self.vocab.size:
            raise in_file(
                self.path, f"model vocabulary has {self.llama.vocab_size} ids, its layout says {self.vocab.size}"
            )
        self.n_residues = int(self.llama.metadata(gguf_keys.N_RESIDUES) or 0)  # 0: trained on several lengths
        if tokenizer is None:  # the shipped tokenizer of the model's kind
            tokenizer = "motiontoken" if self.vocab.key_codebook_size else "torsiontoken"
        self.tokenizer, self.fold_tokenizer = load_tokenizers(tokenizer, fold_tokenizer)
        self.vocab.check_tokenizer(self.tokenizer.codebook_size, self.tokenizer.hash, source=str(self.tokenizer.path))
        self.motion = self.tokenizer.needs_key_frame
        if self.motion != bool(self.vocab.key_codebook_size):
            raise in_file(
                self.path,
                "model and tokenizer disagree on key frames (a motion model needs the motion "
                "tokenizer, a torsion model a torsion tokenizer)",
            )
        if self.motion:
            self.vocab.check_key_tokenizer(
                self.fold_tokenizer.codebook_size, self.fold_tokenizer.hash, source=str(self.fold_tokenizer.path)
            )
        # Fine codes: the model draws them, the tokenizer's fine stage decodes them.
        self.fine_codes = self.tokenizer.fine_codes if self.vocab.fine_codebook_size else None
        if self.vocab.fine_codebook_size:
            if self.fine_codes is None:
                raise in_file(self.path, f"model has fine codes; tokenizer {self.tokenizer.path} has none")
            self.vocab.check_fine(self.fine_codes.size, self.fine_codes.hash, source=str(self.tokenizer.path))
        self.model_hash = sha256_file(self.path)

    @property
    def default_temperature(self) -> float:
        """Sampling temperature when the caller gives no :class:`SamplingParams` (:func:`default_temperature`)."""
        return default_temperature(self.motion)

    def layout(self, n_residues: int):
        from mdllm import _core

        if self.n_residues and n_residues != self.n_residues:
            raise MdllmError(
                f"{self.path}: model was trained on proteins of {self.n_residues} residues, "
                f"the start structure has {n_residues}"
            )
        begin = self.vocab.structure_offset
        if self.fine_codes is None:
            return _core.FrameLayout(begin, begin + self.vocab.codebook_size, self.vocab.frame_id, n_residues)
        fine = self.vocab.fine_offset
        return _core.FrameLayout(
            begin,
            begin + self.vocab.codebook_size,
            self.vocab.frame_id,
            n_residues,
            fine,
            fine + self.vocab.fine_codebook_size,
            self.fine_codes.follows.astype(np.uint8),
        )

    def fine_codes_of(self, fine_ids) -> np.ndarray:
        """Fine-token ids (-1: none) -> fine codes (-1: none)."""
        fine_ids = np.asarray(fine_ids)
        return np.where(fine_ids >= 0, fine_ids - self.vocab.fine_offset, -1).astype(np.int32)

    def fine_ids_of(self, fine_codes) -> np.ndarray:
        """Fine codes (-1: none) -> fine-token ids (-1: none)."""
        fine_codes = np.asarray(fine_codes)
        return np.where(fine_codes >= 0, fine_codes + self.vocab.fine_offset, -1).astype(np.int32)

    def _start(self, start, top, window) -> Backbone:
        backbone = start if isinstance(start, Backbone) else load_backbone(start, top=top)
        if len(backbone.chains) > 1 and not self.motion:
            raise MdllmError(f"{backbone.source}: has {len(backbone.chains)} chains; select one (chain=...)")
        return backbone[-window:]

    def _context(self, backbone: Backbone, key=None):
        """(prefix ids, start-frame codes, key frame or None, start fine codes or None) for a start backbone."""
        if not self.motion:
            return self.vocab.prefix(backbone.sequence), self.tokenizer.encode(backbone), None, None
        from mdllm.encoding import as_key

        key_xyz = as_key(key, backbone[-1:]) if key is not None else backbone.xyz[-1]
        fold = self.fold_tokenizer.encode(key_xyz[None])[0]
        prefix = self.vocab.prefix(backbone.sequence, key_tokens=fold)
        if self.fine_codes is None:
            return prefix, self.tokenizer.encode(backbone.xyz, key_xyz), key_xyz, None
        codes, fine = self.tokenizer.encode_fine(backbone.xyz, key_xyz)
        return prefix, codes, key_xyz, fine

    def decode(self, codes, key_xyz=None, sequence: str | None = None, fine=None) -> np.ndarray:
        """Structure codes (..., L) (and their fine codes) -> backbones (..., L, 4, 3) nm
        (mdllm.encoding.decode_tokens)."""
        from mdllm.encoding import decode_tokens

        return decode_tokens(self.tokenizer, codes, key_xyz, sequence=sequence, fine=fine)

    def generate(
        self,
        start,
        top=None,
        frames: int = 100,
        walkers: int = 1,
        window: int = 4,
        params: SamplingParams | None = None,
        seed: int = 0,
        kv_shift: bool = True,
        progress: bool = True,
        filter: bool = False,
        refine: bool | None = None,
        guard: bool = True,
        guard_limits: GuardLimits = GuardLimits(),
        key=None,
        constrain: bool = False,
        constraint_limits: ConstraintLimits = ConstraintLimits(),
        repair: bool = False,
        repair_limits: RepairLimits = RepairLimits(),
    ) -> Ensemble:
        """``refine``: restrained geometric refinement of the decoded backbones (ideal bonds, angles,
        peptide planes, no overlaps; mdllm.geometry.refine); tokens and likelihoods are unchanged and
        ``info["refine"]`` records how far the atoms moved. Default (None): on for motion tokens, whose
        per-residue codes leave local geometry (peptide planes, Ramachandran angles) distorted, off for
        torsion tokens, whose decoder builds ideal geometry. ``filter``: keep only acceptable frames
        (valid and globally plausible against the start, :meth:`Ensemble.check`).
        ``guard`` (motion tokens): draw a residue again at once when it would break its link to the
        residue before it (``GuardLimits.residue_redraw``), and a frame again when :class:`FrameGuard`
        rejects it, judging the frame the user gets (refined when refining); ``info["guard"]`` counts the
        draws and why.
        ``key``: the key frame (default: the start's last frame).
        ``params``: sampling (default: :attr:`default_temperature`, no top-k, top-p or min-p).
        ``constrain`` (motion tokens): constrained decoding; before each residue is drawn, the codes that
        would break local geometry (peptide-bond distances, Ramachandran outliers, clashes) with the
        residues already drawn in the frame are masked (:mod:`mdllm.sampling.constraint`,
        ``constraint_limits``); with a causal context decoder each drawn code is also judged as it will be
        decoded and drawn again when rejected (``ConstraintLimits.decoded_tries``). Likelihoods stay the
        model's; ``info["constraint"]`` counts the draws whose mask was empty (drawn unconstrained), the
        codes the decoded check sent back and the draws it kept after finding no code that passes. With fine
        codes it judges the structure codes alone (the fine token after a code corrects it by a fraction of
        an Å); repair judges frames as they decode, fine codes included.
        ``repair`` (motion tokens): frame repair; once a frame is drawn, residues that carry a validity fault
        (as the frame decodes) take other codes among the model's most likely there, until the frame passes
        (:mod:`mdllm.sampling.repair`, ``repair_limits``); the frame is then evaluated again so the next one
        follows it. ``info["repair"]`` counts the frames and codes changed and the frames it could not fix."""
        if frames < 1 or walkers < 1 or window < 1:
            raise MdllmError("frames, walkers and window must be at least 1")
        refine = self.motion if refine is None else refine
        params = SamplingParams(temperature=self.default_temperature) if params is None else params
        if repair and not self.motion:
            raise MdllmError(f"{self.path}: frame repair needs a motion-token model; this is a torsion-token model")
        if constrain and not self.motion:
            raise MdllmError(
                f"{self.path}: constrained decoding needs a motion-token model (codes placed on a key "
                "frame); this is a torsion-token model"
            )
        backbone = self._start(start, top, window)
        layout = self.layout(backbone.n_residues)
        prefix, start_tokens, key_xyz, start_fine = self._context(backbone, key)
        constraint = None
        if constrain:
            from mdllm.sampling.constraint import ChainConstraint

            constraint = ChainConstraint(
                self.tokenizer.codebook, key_xyz, backbone.sequence, backbone.chain_ids, constraint_limits
            )
            decoder = self.tokenizer.context_decoder
            if constraint_limits.decoded_tries > 0 and decoder is not None and decoder.ahead == 0:
                from mdllm.tokenizer.motion_context import key_segments, residue_classes

                classes = residue_classes(backbone.sequence, key_segments(key_xyz))
                core_decoder = self.tokenizer.core_context_decoder()
                if core_decoder is not None:
                    constraint.judge_decoded(core_decoder, classes)
        repairer = None
        if repair:
            from mdllm.sampling.repair import FrameRepair

            repairer = FrameRepair(
                self.tokenizer,
                key_xyz,
                backbone.sequence,
                backbone.chain_ids,
                repair_limits,
                use_fine=self.fine_codes is not None,
            )
        prefix = prefix.astype(np.int32)
        start_ids = (start_tokens + self.vocab.structure_offset).astype(np.int32).ravel()
        frame_guard = FrameGuard(key_xyz, guard_limits) if guard and self.motion else None
        link_guard = None
        if frame_guard and guard_limits.residue_redraw:
            link_guard = guard_limits.link_constraint(
                self.tokenizer.codebook, key_xyz, backbone.sequence, backbone.chain_ids
            )
        finish = _Finisher(self, key_xyz, backbone.sequence, refine)

        def frame_check(frame_tokens, frame_fine, fresh):
            accept = np.ones(len(frame_tokens), bool)
            rows = np.flatnonzero(fresh)
            accept[rows] = frame_guard.check(finish.frames(frame_tokens, rows, frame_fine))
            return accept

        from mdllm.progress import bar as progress_bar

        bar = progress_bar(total=frames, enabled=progress, unit="frame", desc="generating")

        def frame_done(done):  # the C++ loop finished a frame: its draws are final
            finish.commit()
            bar.update(done - bar.n)
            return True

        t0 = time.perf_counter()
        tokens, logprobs, timing, redraws, residue_redraws = self.llama.generate(
            prefix,
            start_ids,
            layout,
            frames,
            walkers,
            window,
            params.temperature,
            params.top_k,
            params.top_p,
            params.min_p,
            seed,
            kv_shift=kv_shift,
            progress=frame_done,
            frame_check=frame_check if frame_guard else None,
            max_tries=guard_limits.max_tries if frame_guard else 0,
            constraint=constraint.core if constraint else None,
            link_guard=link_guard.core if link_guard else None,
            decoded_tries=constraint_limits.decoded_tries if constraint and constraint.core.decodes else 0,
            repair=repairer.core if repairer else None,
            start_fine=None if start_fine is None else self.fine_ids_of(start_fine).ravel(),
        )
        bar.close()
        codes = tokens - self.vocab.structure_offset
        fine = fine_logprobs = None
        if self.fine_codes is not None:
            fine, fine_logprobs = self.fine_codes_of(timing.pop("fine")), timing.pop("fine_logprobs")
        t1 = time.perf_counter()
        xyz, raw = finish.all_frames(codes, progress=progress, fine=fine)
        timing.update(decode_seconds=finish.decode_seconds, finish_seconds=time.perf_counter() - t1)
        refined = None
        if refine:
            shift_A = np.sqrt(((xyz - raw) ** 2).sum(-1).mean(axis=(-2, -1))).ravel() * 10.0
            refined = {
                "rms_displacement_A_median": float(np.median(shift_A)),
                "rms_displacement_A_max": float(shift_A.max()),
                "frames_reused_from_the_guard": finish.reused,
            }
            timing.update(refine_seconds=finish.refine_seconds)
        timing.update(total_seconds=time.perf_counter() - t0)
        info = {
            "model": str(self.path),
            "model_sha256": self.model_hash,
            "tokenizer": str(self.tokenizer.path),
            "tokenizer_hash": self.tokenizer.hash,
            "tokenizer_file_hash": self.tokenizer.file_hash,
            "decoder_hash": self.tokenizer.decoder_hash,
            "codebook_size": self.tokenizer.codebook_size,
            "sequence": backbone.sequence,
            "start": str(backbone.source),
            "start_frames": int(backbone.n_frames),
            "frames": int(codes.shape[1]),
            "walkers": walkers,
            "window": window,
            "temperature": params.temperature,
            "top_k": params.top_k,
            "top_p": params.top_p,
            "min_p": params.min_p,
            "seed": seed,
            "kv_shift": kv_shift,
            "refine": refined,
            "timing": timing,
            "frames_per_second": codes.shape[0] * codes.shape[1] / max(timing["generate_seconds"], 1e-12),
            "tokenizer_kind": self.tokenizer.kind,
        }
        if fine is not None:
            info.update(
                fine_hash=self.fine_codes.hash,
                fine_codebook_size=self.fine_codes.size,
                fine_token_fraction=float((fine >= 0).mean()),
            )
        if constraint:
            draws = timing.pop("constrained_draws")
            info["constraint"] = {
                "limits": asdict(constraint_limits),
                "constrained_draws": int(draws),
                "empty_masks": int(timing.pop("empty_masks")),
                "mean_allowed_codes": timing.pop("allowed_codes") / max(draws, 1),
                "seconds": timing.pop("constraint_seconds"),
                # Draws judged again as decoded (a causal context decoder): codes judged after the first
                # draw (redraws and the scan of all codes), and draws kept failing because none passed.
                "decoded_check": bool(constraint.core.decodes),
                "decoded_redraws": int(timing.pop("decoded_redraws")),
                "decoded_kept": int(timing.pop("decoded_kept")),
            }
        else:
            info["constraint"] = None
        if repairer:
            changed = timing.pop("repaired")
            info["repair"] = {
                "limits": asdict(repair_limits),
                "frames": int(changed.size),
                "frames_repaired": int((changed > 0).sum()),
                "codes_changed": int(changed.sum()),
                "code_fraction_changed": float(changed.sum() / max(tokens.size, 1)),
                # frames (each draw the guard judged counts) still invalid after the repair's last change
                "frames_left_invalid": int(timing.pop("repair_failed")),
                "codes_judged": int(timing.pop("repair_judged")),
                "seconds": timing.pop("repair_seconds"),
            }
        elif self.motion:
            info["repair"] = None
        if frame_guard:
            info["guard"] = {
                "limits": asdict(guard_limits),
                "frames": int(redraws.size),
                "frames_redrawn": int((redraws > 0).sum()),
                "redraws": int(redraws.sum()),
                "frames_kept_after_last_try": int((redraws >= guard_limits.max_tries).sum()),
                "rejections_by_reason": dict(frame_guard.reasons),
                "redraw_fraction": float((redraws > 0).mean()),
                # Residue redraws: the raw model's broken links, caught as each residue was drawn.
                "residues_redrawn": int(residue_redraws.sum()),
                "residue_redraw_fraction": float(residue_redraws.sum() / max(tokens.size, 1)),
                "frames_with_residue_redraws": int((residue_redraws > 0).sum()),
                "residue_redraws_kept": int(timing.pop("link_guard_kept", 0)),
            }
        elif self.motion:
            info["guard"] = None
        ensemble = Ensemble(
            xyz,
            codes.astype(np.int32),
            logprobs,
            backbone.sequence,
            info,
            key_xyz=key_xyz,
            redraws=redraws if frame_guard else None,
            chain_ids=backbone.chain_ids,
            residue_ids=backbone.residue_ids,
            fine=fine,
            fine_logprobs=fine_logprobs,
        )
        if filter:
            ensemble.check(start_xyz=key_xyz if key_xyz is not None else backbone.xyz[-1])
        return ensemble

    def score(self, trajectory, top=None, window: int = 4) -> np.ndarray:
        """Per-frame log-likelihood (frames,) of an existing trajectory under the rolling window; the
        first frame is conditioned on the sequence alone."""
        backbone = trajectory if isinstance(trajectory, Backbone) else load_backbone(trajectory, top=top)
        layout = self.layout(backbone.n_residues)
        prefix, codes, _, fine = self._context(backbone, backbone.xyz[0] if self.motion else None)
        prefix = prefix.astype(np.int32)
        ids = (codes + self.vocab.structure_offset).astype(np.int32).ravel()
        if fine is None:
            return self.llama.score(prefix, ids, layout, window).sum(axis=1)
        lp, fine_lp = self.llama.score(prefix, ids, layout, window, self.fine_ids_of(fine).ravel())
        return lp.sum(axis=1) + fine_lp.sum(axis=1)


def generate(model, start, top=None, tokenizer=None, gpu_layers: int = 0, threads: int = 0, **kwargs) -> Ensemble:
    """Load ``model`` (GGUF) and its tokenizer, then :meth:`Generator.generate` from ``start``."""
    return Generator(model, tokenizer, gpu_layers, threads).generate(start, top, **kwargs)
