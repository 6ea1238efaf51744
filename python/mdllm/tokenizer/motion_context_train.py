"""Training the context decoder of motion tokens (mdllm.tokenizer.motion_context), in PyTorch.

Each step takes a batch of frames of one trajectory against one of its key frames: the frames' tokens
(the shipped encoder's), a share of them swapped for the same residue's token in other frames of the
trajectory (what a language model's incoherent draws look like), and the true frames. The network's
displacements are placed on the key and projected onto the key's local geometry exactly as decoding
does (a differentiable copy of mdllm.geometry.projection), and the loss is

    mean squared atom error (Å²) + clash_weight * backbone overlaps (Å², per residue)
                                 + rama_weight * distance to the allowed Ramachandran region (rad², per residue)

with overlaps and regions as the validity check (mdllm.evaluate.check_backbone) defines them, so that
the decoded frames are close to the true ones and locally valid.
"""

from __future__ import annotations

import time

import numpy as np

from mdllm.errors import MdllmError
from mdllm.tokenizer.motion_context import ContextDecoder, ContextLayout, feature_size, key_segments

CLASH_MARGIN_NM = 0.02  # penalise overlaps from this far below the check's limit
CA_MIN_NM = 0.30  # non-neighbouring CAs (the check's limit)


class _Target:
    """One trajectory seen from one key frame, with what the loss needs as tensors."""

    def __init__(self, xyz, key, sequence, tokenizer, window, spatial, ahead=None):
        import torch

        from mdllm.tokenizer.motion import superpose_on_key

        key = np.asarray(key, np.float64)
        self.n_res = len(key)
        self.layout = ContextLayout(key, window, sequence, spatial, ahead)
        self.tokens = tokenizer.encode(xyz, key[None])
        self.truth = torch.tensor(superpose_on_key(xyz, key))
        self.key = torch.tensor(key)
        self.rot = torch.tensor(self.layout.rot)
        segments = key_segments(key)
        self._projection_pairs(key)
        self._clash_pairs(segments)
        self._rama_residues(sequence, segments)

    def _projection_pairs(self, key):
        """The distances mdllm.geometry.projection restores, as index and target tensors."""
        import torch

        from mdllm.geometry.projection import key_constraints

        self.pair_a, self.pair_b, self.pair_target, self.share = map(torch.tensor, key_constraints(key))

    def _clash_pairs(self, seg):
        """Atom pairs of residues two or more apart in one segment, with the validity check's limits."""
        import torch

        from mdllm.evaluate.validity import VDW_RADII_NM, ValidityLimits

        n_res = self.n_res
        residue, atom = np.repeat(np.arange(n_res), 4), np.tile(np.arange(4), n_res)
        i, j = np.triu_indices(4 * n_res, 1)
        far = (np.abs(residue[i] - residue[j]) >= ValidityLimits().min_separation) & (
            seg[residue[i]] == seg[residue[j]]
        )
        i, j = i[far], j[far]
        radii = np.asarray(VDW_RADII_NM)
        limit = radii[atom[i]] + radii[atom[j]] - ValidityLimits().clash_overlap_A / 10.0
        both_ca = (atom[i] == 1) & (atom[j] == 1)
        limit[both_ca] = np.maximum(limit[both_ca], CA_MIN_NM)
        self.clash_i, self.clash_j = torch.tensor(i), torch.tensor(j)
        self.clash_limit = torch.tensor(limit + CLASH_MARGIN_NM)

    def _rama_residues(self, sequence, seg):
        """Residues with phi and psi (both neighbours in their segment) and their Ramachandran classes."""
        import torch

        from mdllm.geometry import ramachandran

        ends = np.append(seg[1:] != seg[:-1], True)
        starts = np.insert(seg[1:] != seg[:-1], 0, True)
        self.rama_residues = torch.tensor(np.flatnonzero(~ends & ~starts))
        classes = ramachandran.residue_classes(sequence, ends)
        self.rama_classes = torch.tensor(classes[self.rama_residues.numpy()])

    def place(self, disp):
        import torch

        return self.key[None] + torch.einsum("lij,blaj->blai", self.rot, disp.reshape(*disp.shape[:2], 4, 3))

    def project(self, x, iterations):
        """mdllm.geometry.projection's Jacobi iterations, differentiable."""
        b, n_res = x.shape[:2]
        x = x.reshape(b, 4 * n_res, 3)
        for _ in range(iterations):
            d = x[:, self.pair_b] - x[:, self.pair_a]
            dist = d.norm(dim=-1, keepdim=True).clamp_min(1e-9)
            corr = 0.5 * (dist - self.pair_target[None, :, None]) / dist * d
            delta = x.new_zeros(x.shape).index_add_(1, self.pair_a, corr).index_add_(1, self.pair_b, -corr)
            x = x + delta / self.share[None, :, None]
        return x.reshape(b, n_res, 4, 3)

    def clash_penalty(self, x):
        """Per frame: sum over atom pairs of (Å below the limit + margin)²."""
        flat = x.reshape(x.shape[0], -1, 3)
        d = (flat[:, self.clash_i] - flat[:, self.clash_j]).norm(dim=-1)
        return (10.0 * (self.clash_limit[None] - d).clamp_min(0.0)).pow(2).sum(1)

    def rama_penalty(self, x, fields):
        """Per frame: sum over residues of the squared distance (rad) to the allowed region."""
        import torch

        r = self.rama_residues
        n, ca, c = x[..., 0, :], x[..., 1, :], x[..., 2, :]
        phi = _dihedral(c[:, r - 1], n[:, r], ca[:, r], c[:, r])
        psi = _dihedral(n[:, r], ca[:, r], c[:, r], n[:, r + 1])
        grid, step = fields
        cells = grid.shape[-1] - 2  # one wrapped cell on each side
        u = (phi + np.pi) / step + 0.5  # cell-centre coordinates, +1 for the wrapped cell
        v = (psi + np.pi) / step + 0.5
        where = torch.stack([v / (cells + 1) * 2 - 1, u / (cells + 1) * 2 - 1], -1)[:, None]  # (B, 1, R, 2)
        values = torch.nn.functional.grid_sample(
            grid.expand(x.shape[0], -1, -1, -1), where, align_corners=True
        )  # (B, classes, 1, R)
        value = values[:, :, 0].gather(1, self.rama_classes[None, None].expand(x.shape[0], 1, -1))[:, 0]
        return value.pow(2).sum(1)


def _dihedral(p0, p1, p2, p3):
    import torch

    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / b1.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    v = b0 - (b0 * b1).sum(-1, keepdim=True) * b1
    w = b2 - (b2 * b1).sum(-1, keepdim=True) * b1
    return torch.atan2((torch.cross(b1, v, dim=-1) * w).sum(-1), (v * w).sum(-1))


def _rama_grid():
    """The refinement's distance-to-allowed fields (4 classes), one wrapped cell on each side."""
    import torch

    from mdllm.geometry.refine import _rama_fields_cached

    dist, *_, step = _rama_fields_cached()
    grid = torch.tensor(np.pad(dist, ((0, 0), (1, 1), (1, 1)), mode="wrap"))
    return grid[None], step


def network(inputs: int, hidden: int):
    """The PyTorch form of ContextDecoder's network (float64)."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(inputs, hidden),
        torch.nn.GELU(approximate="tanh"),
        torch.nn.Linear(hidden, hidden),
        torch.nn.GELU(approximate="tanh"),
        torch.nn.Linear(hidden, 12),
    ).double()


def network_tensors(net, mean, scale) -> dict[str, np.ndarray]:
    """The tensors of a ContextDecoder from a :func:`network` and its input scaling."""
    layers = [net[0], net[2], net[4]]
    tensors = {f"w{i}": layer.weight.detach().numpy() for i, layer in enumerate(layers)}
    tensors.update({f"b{i}": layer.bias.detach().numpy() for i, layer in enumerate(layers)})
    tensors.update(mean=np.asarray(mean, np.float64), scale=np.asarray(scale, np.float64))
    return tensors


def _swap_sources(frames, n_frames: int, n_res: int, rng, max_fraction):
    """(B, L) frame whose token each residue of the B ``frames`` takes: its own, except, per frame, a
    fraction (uniform up to ``max_fraction``, 0 for 30 % of frames) of residues that take the same
    residue's token from a random one of ``n_frames``."""
    b = len(frames)
    fraction = rng.uniform(0, max_fraction, size=(b, 1)) * (rng.random((b, 1)) < 0.7)
    swap = rng.random((b, n_res)) < fraction
    return np.where(swap, rng.integers(n_frames, size=(b, n_res)), np.asarray(frames)[:, None])


def train_context_decoder(
    trajectories,
    tokenizer,
    out,
    steps: int = 3000,
    window: int = 3,
    spatial: int = 0,
    ahead: int | None = None,
    hidden: int = 256,
    keys_per_trajectory: int = 8,
    max_swap: float = 0.0,
    swap_target: str = "frame",
    clash_weight: float = 10.0,
    rama_weight: float = 3.0,
    projection_iterations: int = 60,  # the product's 300 trained a decoder no better (models/motiontoken/RECIPE.md)
    residues_per_batch: int = 1200,
    seed: int = 0,
    sources=None,
    progress: bool = True,
) -> dict:
    """Fit a context decoder for ``tokenizer`` (a MotionTokenizer) on ``trajectories`` (Backbones,
    each seen from its first frame and ``keys_per_trajectory - 1`` random frames) and save it to
    ``out`` (a .safetensors file; its training notes go beside it as .json). A swapped token's residue is
    aimed at its own frame's position (``swap_target`` 'frame': the decoder learns to infer it from the
    neighbours) or at the position in the frame the token came from ('source': it follows every token
    and only the clash and Ramachandran terms make neighbours agree)."""
    import torch

    from mdllm.tokenizer.motion_context import FILE_NAME
    from mdllm.tokenizer.motion_train import key_frame_indices

    if swap_target not in ("frame", "source"):
        raise MdllmError(f"swap_target is 'frame' or 'source', not {swap_target!r}")
    if tokenizer.kind != "motion":
        raise MdllmError(f"a context decoder belongs to a motion tokenizer, not a {tokenizer.kind} one")
    ahead = window if ahead is None else ahead
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    targets = []
    for bb in trajectories:
        if len(bb.xyz) < 2:
            continue
        keys = key_frame_indices(len(bb.xyz), keys_per_trajectory, rng)
        targets += [_Target(bb.xyz, bb.xyz[k], bb.sequence, tokenizer, window, spatial, ahead) for k in keys]
    if not targets:
        raise MdllmError("no trajectory with at least two frames to train a context decoder on")
    codebook = np.asarray(tokenizer.codebook, np.float64)
    d = feature_size(window, spatial, ahead)
    sample = np.concatenate([t.layout.features(codebook[t.tokens[:8]]).reshape(-1, d) for t in targets]) * 10.0
    mean, scale = sample.mean(0), sample.std(0) + 1e-3
    net = network(d, hidden)
    torch.nn.init.zeros_(net[-1].weight)  # start from the plain decoder
    torch.nn.init.zeros_(net[-1].bias)
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps)
    weights = np.array([t.n_res * len(t.tokens) for t in targets], np.float64)
    weights /= weights.sum()
    grid = _rama_grid()
    mean_t, scale_t = torch.tensor(mean), torch.tensor(scale)
    bar = None
    if progress:
        from mdllm.progress import bar as progress_bar

        bar = progress_bar(total=steps, desc="context decoder", unit="step")
    history, running = [], np.zeros(4)
    for step in range(steps):
        t = targets[rng.choice(len(targets), p=weights)]
        frames = rng.integers(len(t.tokens), size=max(2, min(32, residues_per_batch // t.n_res)))
        source = _swap_sources(frames, len(t.tokens), t.n_res, rng, max_swap)
        residues = np.arange(t.n_res)[None]
        codes = codebook[t.tokens[source, residues]]
        features = torch.tensor(t.layout.features(codes))
        disp = torch.tensor(codes) + net((features * 10.0 - mean_t) / scale_t) / 10.0
        x = t.project(t.place(disp), projection_iterations)
        truth = t.truth[source, residues] if swap_target == "source" else t.truth[frames]
        mse = (10.0 * (x - truth)).pow(2).sum(-1).mean()
        clash = t.clash_penalty(x).mean() / t.n_res
        rama = t.rama_penalty(x, grid).mean() / t.n_res
        loss = mse + clash_weight * clash + rama_weight * rama
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        schedule.step()
        running += (mse.item(), clash.item(), rama.item(), 1)
        if (step + 1) % 250 == 0 or step + 1 == steps:
            history.append({"step": step + 1, **dict(zip(("mse_A2", "clash", "rama"), running[:3] / running[3]))})
            running[:] = 0
        if bar:
            bar.update(1)
            bar.set_postfix(mse_A2=f"{mse.item():.3f}", clash=f"{clash.item():.4f}")
    if bar:
        bar.close()
    tensors = network_tensors(net, mean, scale)
    notes = {
        "tokenizer_hash": tokenizer.hash,
        "steps": steps,
        "window": window,
        "spatial": spatial,
        "ahead": ahead,
        "hidden": hidden,
        "keys_per_trajectory": keys_per_trajectory,
        "max_swap": max_swap,
        "swap_target": swap_target,
        "clash_weight": clash_weight,
        "rama_weight": rama_weight,
        "projection_iterations": projection_iterations,
        "seed": seed,
        "targets": len(targets),
        "minutes": (time.perf_counter() - t0) / 60,
        "history": history,
    }
    if sources:
        notes["sources"] = list(sources)
    out = str(out)
    if not out.endswith(".safetensors"):
        from pathlib import Path

        out = str(Path(out) / FILE_NAME)
    notes["file"] = out
    ContextDecoder(tensors, window, spatial, ahead=ahead).save(out, notes)
    return notes
