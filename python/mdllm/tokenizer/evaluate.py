"""The acceptance measurements of a tokenizer: round trip on held-out chains and on AdK transitions,
state fidelity, closed/open token difference and codebook use. Returns plain dicts (Angstrom).

Also self-consistency: the fraction of residues whose token survives decode -> encode. A decoded
structure that re-encodes to other tokens is one the language model would describe differently."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mdllm.tokenizer.metrics import backbone_rmsd_angstrom, codebook_usage, tm_score


def _summary(values):
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95)), "n": int(values.size)}


def held_out_chains(tokenizer, npz_path, val_percent=3.0, max_len=None):
    """Round trip of every held-out chain segment (split as in training)."""
    from mdllm.tokenizer.data import load_dataset

    ds = load_dataset(npz_path, (), val_percent=val_percent)
    rmsd, tm, tokens, kept = [], [], [], []
    for xyz in ds.val:
        x = xyz[:max_len][None] if max_len else xyz[None]
        tok = tokenizer.encode(x)
        rec = tokenizer.decode(tok)
        rmsd.append(backbone_rmsd_angstrom(rec, x)[0])
        tm.append(tm_score(rec, x)[0])
        tokens.append(tok.ravel())
        kept.append((tokenizer.encode(rec) == tok).ravel())
    ppl, used = codebook_usage(np.concatenate(tokens), tokenizer.codebook_size)
    return {
        "rmsd_A": _summary(rmsd),
        "tm": _summary(tm),
        "perplexity": ppl,
        "codes_used": used,
        "reencoded_tokens_kept": float(np.concatenate(kept).mean()),
        "residues": int(sum(len(t) for t in tokens)),
    }


def adk_transitions(tokenizer, adk_dir):
    """Per AdK closed->open trajectory: round-trip RMSD/TM and state fidelity against the open state."""
    from mdllm.io import load_backbone

    adk_dir = Path(adk_dir)
    open_state = load_backbone(adk_dir / "adk_open.pdb").xyz
    closed_state = load_backbone(adk_dir / "adk_closed.pdb").xyz
    results = {}
    for xtc in sorted(adk_dir.glob("*.xtc")):
        bb = load_backbone(xtc, top=xtc.with_suffix(".pdb"))
        tok = tokenizer.encode(bb)
        rec = tokenizer.decode(tok)
        ref = np.repeat(open_state, len(bb.xyz), axis=0)
        fidelity = np.abs(backbone_rmsd_angstrom(rec, ref) - backbone_rmsd_angstrom(bb.xyz, ref))
        results[xtc.name] = {
            "frames": len(bb.xyz),
            "rmsd_A": _summary(backbone_rmsd_angstrom(rec, bb.xyz)),
            "tm": _summary(tm_score(rec, bb.xyz)),
            "state_fidelity_A": _summary(fidelity),
            "reencoded_tokens_kept": float((tokenizer.encode(rec) == tok).mean()),
            "tokens_changed_first_to_last": float((tok[0] != tok[-1]).mean()),
            "tokens_changed_between_neighbour_frames": float((tok[1:] != tok[:-1]).mean()),
        }
    t_open, t_closed = tokenizer.encode(open_state), tokenizer.encode(closed_state)
    results["closed_vs_open_tokens_differ"] = float((t_open != t_closed).mean())
    return results


def motion_round_trip(
    tokenizer, trajectories: dict, key_frame: int = 0, robustness_tries: int = 20, seed: int = 0
) -> dict:
    """Motion tokenizer on MD trajectories ({name: Backbone}), each against its frame ``key_frame``:
    round trip of the decoding (with the context decoder when the tokenizer has one; then also without)
    and after projection onto the key's geometry (backbone RMSD to the frame superposed on the key, Å), robustness (CA-RMSD moved by replacing a random 5 % of one
    frame's tokens by their nearest other code, median of ``robustness_tries``), flicker (tokens that
    change between neighbouring frames) and codebook use."""
    from mdllm.evaluate.validity import check_backbone
    from mdllm.geometry.projection import project_to_key_geometry
    from mdllm.tokenizer.motion import superpose_on_key

    rng = np.random.default_rng(seed)
    nearest_other = _nearest_other(tokenizer.codebook)
    results, all_tokens = {}, []
    for name, bb in trajectories.items():
        key = bb.xyz[key_frame]
        tok = tokenizer.encode(bb.xyz, key)
        placed = tokenizer.decode(tok, key, bb.sequence)
        projected = project_to_key_geometry(placed, key)
        truth = superpose_on_key(bb.xyz, key)
        moved = []
        for _ in range(robustness_tries):
            f = rng.integers(len(tok))
            swapped = tok[f : f + 1].copy()
            picks = rng.choice(bb.n_residues, size=max(1, round(0.05 * bb.n_residues)), replace=False)
            swapped[0, picks] = nearest_other[swapped[0, picks]]
            a, b = placed[f : f + 1, :, 1], tokenizer.decode(swapped, key, bb.sequence)[:, :, 1]
            moved.append(float(np.sqrt(((a - b) ** 2).sum(-1).mean()) * 10))
        all_tokens.append(tok.ravel())
        results[name] = {
            "frames": int(bb.n_frames),
            "residues": int(bb.n_residues),
            "rmsd_A": _summary(backbone_rmsd_angstrom(placed, truth)),
            "rmsd_projected_A": _summary(backbone_rmsd_angstrom(projected, truth)),
            "valid_projected": float(check_backbone(projected, bb.sequence).valid.mean()),
            "robustness_5pct_ca_A": float(np.median(moved)),
            "tokens_changed_between_neighbour_frames": float((tok[1:] != tok[:-1]).mean()) if len(tok) > 1 else None,
        }
        if tokenizer.context_decoder is not None:  # the plain decoder beside it
            plain = project_to_key_geometry(tokenizer.decode(tok, key, use_context=False), key)
            results[name]["rmsd_projected_without_context_A"] = _summary(backbone_rmsd_angstrom(plain, truth))
            results[name]["valid_projected_without_context"] = float(check_backbone(plain, bb.sequence).valid.mean())
        if tokenizer.fine_codes is not None:
            results[name]["fine"] = _fine_round_trip(tokenizer, bb, key, truth, rng, robustness_tries)
    ppl, used = codebook_usage(np.concatenate(all_tokens), tokenizer.codebook_size)
    return {"trajectories": results, "perplexity": ppl, "codes_used": used}


def _fine_round_trip(tokenizer, bb, key, truth, rng, tries: int) -> dict:
    """The same measurements with the fine codes (mdllm.tokenizer.motion_fine): round trip after
    projection, validity, the share of residues with a fine token, robustness (5 % of all the frame's
    tokens, first and fine, replaced by their stage's nearest other code; a first code that then takes a
    fine code gets the fine code nearest no correction, one that no longer does loses it) and flicker."""
    from mdllm.evaluate.validity import check_backbone
    from mdllm.geometry.projection import project_to_key_geometry

    fine_codes = tokenizer.fine_codes
    first_other = _nearest_other(tokenizer.codebook)
    fine_other = _nearest_other(fine_codes.codebook)
    tok, fine = tokenizer.encode_fine(bb.xyz, key)
    projected = project_to_key_geometry(tokenizer.decode(tok, key, bb.sequence, fine=fine), key)
    placed_ca = tokenizer.decode(tok, key, bb.sequence, fine=fine)[:, :, 1]
    moved = []
    for _ in range(tries):
        f = rng.integers(len(tok))
        t, c = tok[f].copy(), fine[f].copy()
        slots = [(i, 0) for i in range(len(t))] + [(i, 1) for i in np.flatnonzero(c >= 0)]
        for k in rng.choice(len(slots), size=max(1, round(0.05 * len(slots))), replace=False):
            i, stage = slots[k]
            if stage == 1:
                c[i] = fine_other[c[i]] if c[i] >= 0 else c[i]  # its first code may have dropped it
                continue
            t[i] = first_other[t[i]]
            if not fine_codes.follows[t[i]]:
                c[i] = -1
            elif c[i] < 0:
                c[i] = fine_codes.zero_code()
        b = tokenizer.decode(t[None], key, bb.sequence, fine=c[None])[0, :, 1]
        moved.append(float(np.sqrt(((placed_ca[f] - b) ** 2).sum(-1).mean()) * 10))
    has = fine >= 0
    return {
        "rmsd_projected_A": _summary(backbone_rmsd_angstrom(projected, truth)),
        "valid_projected": float(check_backbone(projected, bb.sequence).valid.mean()),
        "residues_with_fine_token": float(has.mean()),
        "robustness_5pct_ca_A": float(np.median(moved)),
        "fine_tokens_changed_between_neighbour_frames": (
            float((fine[1:] != fine[:-1])[has[1:] & has[:-1]].mean()) if (has[1:] & has[:-1]).any() else None
        ),
    }


def _nearest_other(codebook) -> np.ndarray:
    """(K,) each code's nearest other code of the same codebook."""
    cb = np.asarray(codebook, np.float64)
    sq = (cb**2).sum(1)
    dist = sq[:, None] + sq[None] - 2 * cb @ cb.T
    np.fill_diagonal(dist, np.inf)
    return dist.argmin(1)
