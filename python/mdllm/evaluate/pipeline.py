"""``evaluate``: every number mdllm reports about a (generated) trajectory, optionally against a
reference MD trajectory and named states; writes metrics.json, PNG plots and report.html."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mdllm.errors import in_file
from mdllm.evaluate import states as st
from mdllm.evaluate.plausibility import GlobalLimits
from mdllm.evaluate.results import EvaluationData
from mdllm.evaluate.validity import ValidityLimits, check_backbone
from mdllm.progress import bar as progress_bar


@dataclass
class EvaluateOptions:
    state_cutoff_A: float = 1.5  # CA RMSD within which a frame belongs to a named state
    tica_lag: int = 1  # frames
    n_clusters: int = 20
    rebuild_frames: int = 0  # frames of each trajectory to rebuild all-atom and minimise (0 = none)
    rebuild_threads: int | None = None  # OpenMM CPU threads (None: every core this process may use)
    max_iterations: int = 1000  # vacuum stage of the minimisation (rebuild.MAX_ITERATIONS)
    solvent_iterations: int = 0  # implicit-solvent polish (rebuild.SOLVENT_ITERATIONS; ~400x dearer per step)
    limits: ValidityLimits = field(default_factory=ValidityLimits)
    global_limits: GlobalLimits = field(default_factory=GlobalLimits)
    plots: bool = True
    progress: bool = True
    seed: int = 0


@dataclass
class Inputs:
    generated: object  # Backbone
    reference: object | None
    states: list
    loglik: np.ndarray | None
    start_xyz: np.ndarray | None = None  # (L, 4, 3) nm on the generated trajectory's residues
    start_source: str = ""
    training: list = field(default_factory=list)  # Backbones the model learned from


def load_inputs(
    generated, top=None, reference=None, reference_top=None, states=None, start=None, training=None, training_top=None
) -> Inputs:
    """Read and cross-check every input before anything is written."""
    from mdllm.io import load_backbone

    gen = load_backbone(generated, top=top, check=False)
    ref = load_backbone(reference, top=reference_top) if reference is not None else None
    named = [st.load_state(name, path, gen.sequence) for name, path in (states or {}).items()]
    if ref is not None:
        ia, ib = st.align_sequences(gen.sequence, ref.sequence)
        same = sum(gen.sequence[i] == ref.sequence[j] for i, j in zip(ia, ib))
        if same < 0.9 * min(gen.n_residues, ref.n_residues):
            raise in_file(
                reference, f"reference shares only {same} aligned residues with {generated}; is it the same protein?"
            )
    train = []
    for path in training or []:
        t = load_backbone(path, top=training_top)
        ia, ib = st.align_sequences(gen.sequence, t.sequence)
        if sum(gen.sequence[i] == t.sequence[j] for i, j in zip(ia, ib)) < 0.9 * min(gen.n_residues, t.n_residues):
            raise in_file(path, f"training trajectory is not the protein of {generated}")
        train.append(t)
    inputs = Inputs(gen, ref, named, _find_loglik(generated), training=train)
    inputs.start_xyz, inputs.start_source = _start_structure(gen, generated, ref, start)
    return inputs


def _start_structure(gen, generated, ref, start):
    """The structure the global checks compare with, on the generated residues: ``start`` if given,
    else the start recorded by ``mdllm generate`` in OUT.json beside the trajectory, else the first
    reference frame, else the first generated frame."""
    from mdllm.io import load_backbone

    source = None
    if start is None:
        meta = Path(generated).with_suffix(".json")
        if meta.is_file():
            try:
                recorded = json.loads(meta.read_text()).get("start")
            except (ValueError, AttributeError):
                recorded = None
            if recorded and Path(recorded).is_file():
                start, source = recorded, f"{recorded} (recorded in {meta.name})"
    if start is not None:
        s = load_backbone(start, check=False)
        if s.n_frames > 1:
            s = s[-1:]  # generation starts from the last frame of a start trajectory
        ia, ib = st.align_sequences(gen.sequence, s.sequence)
        same = np.array([gen.sequence[i] == s.sequence[j] for i, j in zip(ia, ib)], bool)
        if same.sum() != gen.n_residues:
            raise in_file(
                start,
                f"start structure covers {int(same.sum())} of the {gen.n_residues} residues of "
                f"{generated}; give the structure generation started from",
            )
        xyz = np.empty((gen.n_residues, 4, 3), np.float32)
        xyz[ia[same]] = s.xyz[0, ib[same]]
        if not np.isfinite(xyz).all():
            raise in_file(start, "start structure has non-finite coordinates")
        return xyz, source or str(start)
    if ref is not None:
        gi, ri = _common_residues(gen, ref)
        if len(gi) == gen.n_residues and np.isfinite(ref.xyz[0]).all():
            xyz = np.empty((gen.n_residues, 4, 3), np.float32)
            xyz[gi] = ref.xyz[0, ri]
            return xyz, "first reference frame"
    finite = np.flatnonzero(np.isfinite(gen.xyz).all(axis=(1, 2, 3)))
    if not finite.size:
        return None, ""
    return gen.xyz[finite[0]].copy(), "first generated frame"


def _find_loglik(path) -> np.ndarray | None:
    """Per-frame log-likelihoods of the frames ``mdllm generate`` wrote to ``path``, from the token file
    OUT.tokens.npz beside it (only the frames that passed its checks, as in the trajectory)."""
    from mdllm import tokenfile

    path = Path(path)
    candidate = path.with_name(path.stem + ".tokens.npz")
    if not candidate.exists():
        return None
    return tokenfile.load(candidate).kept_loglik()


def _common_residues(gen, ref):
    if ref is None:
        index = np.arange(gen.n_residues)
        return index, index
    ia, ib = st.align_sequences(gen.sequence, ref.sequence)
    same = np.array([gen.sequence[i] == ref.sequence[j] for i, j in zip(ia, ib)], bool)
    return ia[same], ib[same]


def _stats(a):
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return {"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())} if a.size else None


def state_metrics(rmsd_A, labels, names, timestep_ps):
    out = {}
    for k, name in enumerate(names):
        arrival = st.first_arrival(labels, k)
        out[name] = {
            "min_rmsd_A": float(np.nanmin(rmsd_A[k])) if rmsd_A.shape[1] else None,
            "first_rmsd_A": float(rmsd_A[k, 0]),
            "last_rmsd_A": float(rmsd_A[k, -1]),
            "first_frame_in_state": arrival,
            "first_time_in_state_ps": None if arrival is None or timestep_ps is None else arrival * timestep_ps,
        }
    return {
        "per_state": out,
        "populations": st.populations(labels, names),
        "transitions": st.transition_counts(labels, names),
    }


def rmsd_crossing(rmsd_A) -> int | None:
    """First frame where the RMSD to the second state drops below that to the first (two states)."""
    if rmsd_A.shape[0] != 2:
        return None
    below = np.flatnonzero(rmsd_A[1] < rmsd_A[0])
    return int(below[0]) if below.size and rmsd_A[1, 0] >= rmsd_A[0, 0] else None


def evaluate(
    generated,
    out_dir,
    top=None,
    reference=None,
    reference_top=None,
    states=None,
    options: EvaluateOptions | None = None,
    start=None,
    training=None,
    training_top=None,
) -> dict:
    """Run every analysis and write DIR/metrics.json, DIR/*.png and DIR/report.html (plus
    DIR/allatom.dcd/.pdb when frames are rebuilt). Returns the metrics.

    ``start``: the structure generation started from (default: see :func:`_start_structure`), for the
    global checks; ``training``: trajectories the model learned from, so that the closest approach to
    each named state can be compared with theirs."""
    from mdllm.files import atomic_output

    options = options or EvaluateOptions()
    inputs = load_inputs(generated, top, reference, reference_top, states, start, training, training_top)
    gen, ref = inputs.generated, inputs.reference
    out_dir = Path(out_dir)
    steps = ["validity", "states", "comparison", "kinetics", "rebuild", "report"]
    bar = progress_bar(total=len(steps), desc="evaluate", unit="step", enabled=options.progress)

    def step(name):
        bar.set_postfix_str(name)

    metrics: dict = {
        "inputs": {
            "generated": str(generated),
            "generated_top": str(top) if top else None,
            "reference": str(reference) if reference else None,
            "states": {s.name: s.source for s in inputs.states},
            "start": inputs.start_source or None,
            "training": [str(t) for t in training or []],
            "frames": gen.n_frames,
            "residues": gen.n_residues,
            "timestep_ps": gen.timestep,
            "reference_frames": ref.n_frames if ref is not None else None,
        }
    }
    data = EvaluationData()

    # 1. validity
    step("validity")
    validity = check_backbone(gen, limits=options.limits)
    metrics["validity"] = validity.summary()
    metrics["validity"]["invalid"] = [{"frame": f, "reasons": r} for f, r in enumerate(validity.reasons) if r]
    data.validity = validity
    if ref is not None:
        ref_validity = check_backbone(ref, limits=options.limits)
        metrics["reference_validity"] = ref_validity.summary()
        data.reference_validity = ref_validity
    finite = validity.finite
    if not finite.any():
        raise in_file(generated, "no frame has finite coordinates")
    g = gen[np.flatnonzero(finite)]  # analyses below need numbers in every frame
    metrics["inputs"]["finite_frames"] = int(finite.sum())
    _global_checks(gen, ref, inputs.start_xyz, validity, options, metrics, data)
    bar.update()

    # 2. named states
    step("states")
    names = [s.name for s in inputs.states]
    if inputs.states:
        gen_rmsd = st.rmsd_to_states(g, inputs.states)
        gen_labels = st.assign(gen_rmsd, options.state_cutoff_A)
        metrics["states"] = {
            "cutoff_A": options.state_cutoff_A,
            "atoms": "CA of residues aligned to each state",
            "generated": state_metrics(gen_rmsd, gen_labels, names, gen.timestep),
        }
        metrics["states"]["generated"]["rmsd_crossing_frame"] = rmsd_crossing(gen_rmsd)
        if data.acceptable is not None:  # a new state counts only in frames that are acceptable
            keep = data.acceptable[np.flatnonzero(finite)]
            for k, name in enumerate(names):
                metrics["states"]["generated"]["per_state"][name]["min_rmsd_acceptable_A"] = (
                    float(gen_rmsd[k, keep].min()) if keep.any() else None
                )
        data.gen_rmsd, data.gen_time = gen_rmsd, g.time
        if ref is not None:
            ref_states = [st.load_state(s.name, s.source, ref.sequence) for s in inputs.states]
            ref_rmsd = st.rmsd_to_states(ref, ref_states)
            ref_labels = st.assign(ref_rmsd, options.state_cutoff_A)
            metrics["states"]["reference"] = state_metrics(ref_rmsd, ref_labels, names, ref.timestep)
            metrics["states"]["reference"]["rmsd_crossing_frame"] = rmsd_crossing(ref_rmsd)
            data.ref_rmsd, data.ref_time = ref_rmsd, ref.time
        data.state_names = names
        if inputs.training:
            closest = {}
            for k, s in enumerate(inputs.states):
                best = None
                for t in inputs.training:
                    ts = st.load_state(s.name, s.source, t.sequence)
                    ok = np.isfinite(t.xyz).all(axis=(1, 2, 3))
                    if ok.any():
                        value = float(np.nanmin(st.rmsd_to_states(t[np.flatnonzero(ok)], [ts])[0]))
                        best = value if best is None else min(best, value)
                closest[s.name] = best
            metrics["states"]["training"] = {
                "min_rmsd_A": closest,
                "frames": int(sum(t.n_frames for t in inputs.training)),
            }
    bar.update()

    # 3. structural comparison with the reference on the residues both share
    step("comparison")
    from mdllm.evaluate import divergence, fluctuations
    from mdllm.evaluate.validity import phi_psi_deg

    gi, ri = _common_residues(g, ref)
    gen_ca = np.ascontiguousarray(g.xyz[:, gi, 1])
    comparison: dict = {"common_residues": int(len(gi))}
    gen_rmsf = fluctuations.rmsf_A(gen_ca)
    comparison["rmsf_A"] = {"generated": _stats(gen_rmsf)}
    data.gen_rmsf, data.rmsf_residues = gen_rmsf, g.residue_ids[gi]
    gen_pairs = fluctuations.pairwise_rmsd_A(gen_ca)
    comparison["pairwise_rmsd_A"] = {"generated": _stats(gen_pairs)}
    gen_phi, gen_psi = phi_psi_deg(g.xyz, g.chain_ends)
    gen_rg = validity.rg_A[finite]
    data.gen_pairs, data.gen_phi, data.gen_psi = gen_pairs, gen_phi, gen_psi
    if ref is not None:
        ref_ca = np.ascontiguousarray(ref.xyz[:, ri, 1])
        ref_rmsf = fluctuations.rmsf_A(ref_ca)
        comparison["rmsf_A"]["reference"] = _stats(ref_rmsf)
        comparison["rmsf_A"]["pearson_r"] = float(np.corrcoef(gen_rmsf, ref_rmsf)[0, 1])
        ref_pairs = fluctuations.pairwise_rmsd_A(ref_ca)
        comparison["pairwise_rmsd_A"]["reference"] = _stats(ref_pairs)
        hi = max(gen_pairs.max(initial=0), ref_pairs.max(initial=0)) + 1e-6
        comparison["pairwise_rmsd_A"]["js_distance"] = divergence.js_1d(gen_pairs, ref_pairs, 50, (0, hi))
        ref_phi, ref_psi = phi_psi_deg(ref.xyz, ref.chain_ends)
        torsions_gen = np.stack([gen_phi[:, gi].ravel(), gen_psi[:, gi].ravel()], 1)
        torsions_ref = np.stack([ref_phi[:, ri].ravel(), ref_psi[:, ri].ravel()], 1)
        full = [(-180, 180), (-180, 180)]
        comparison["js_distance"] = {
            "phi_psi_2d": divergence.js_2d(torsions_gen, torsions_ref, 36, full),
            "phi": divergence.js_1d(torsions_gen[:, 0], torsions_ref[:, 0], 36, (-180, 180)),
            "psi": divergence.js_1d(torsions_gen[:, 1], torsions_ref[:, 1], 36, (-180, 180)),
            "rg": divergence.js_1d(gen_rg, data.reference_validity.rg_A),
        }
        comparison["rg_A"] = {"generated": _stats(gen_rg), "reference": _stats(data.reference_validity.rg_A)}
        data.ref_rmsf, data.ref_pairs, data.ref_phi, data.ref_psi = ref_rmsf, ref_pairs, ref_phi, ref_psi
    else:
        comparison["rg_A"] = {"generated": _stats(gen_rg)}
    metrics["comparison"] = comparison
    bar.update()

    # 4. TICA and Markov state models
    step("kinetics")
    metrics["kinetics"] = _kinetics(g, ref, gi, ri, data, options)
    if ref is not None and "skipped" not in metrics["kinetics"] and len(ref) < 50:
        metrics["kinetics"]["warning"] = (
            f"the reference has only {len(ref)} frames: TICA and the Markov state "
            "models rest on too few transitions to compare kinetics"
        )
    if inputs.loglik is not None:
        ll = inputs.loglik
        metrics["kinetics"]["generation_loglik"] = {
            "frames": int(ll.size),
            "total": float(np.nansum(ll)),
            "mean_per_frame": float(np.nanmean(ll)),
        }
    bar.update()

    # 5. all-atom rebuild and minimisation
    step("rebuild")
    if options.rebuild_frames > 0:
        metrics["rebuild"] = _rebuild(g, ref, out_dir, options, data)
    bar.update()

    # 6. plots and report
    step("report")
    metrics["plots"] = []
    if options.plots:
        from mdllm.evaluate import plots

        metrics["plots"] = plots.make_all(out_dir, data)
    from mdllm.evaluate import report

    from mdllm.evaluate.verdict import verdict

    metrics["verdict"] = verdict(metrics)
    with atomic_output(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(_plain(metrics), indent=2))
    report.write_html(out_dir / "report.html", metrics)
    bar.update()
    bar.close()
    return metrics


def _global_checks(gen, ref, start_xyz, validity, options, metrics, data):
    """Compaction, native contacts and distance to the reference per frame (mdllm.evaluate.plausibility);
    every frame gets its class: valid (local checks) and acceptable (valid and globally plausible)."""
    from mdllm.evaluate.plausibility import check_global

    v = metrics["validity"]
    if start_xyz is None:
        return
    finite = validity.finite
    gi, ri = _common_residues(gen, ref)
    frames = np.flatnonzero(finite)
    ref_xyz = ref.xyz[:, ri] if ref is not None else None
    report = check_global(gen.xyz[frames][:, gi], validity.valid[frames], start_xyz[gi], ref_xyz, options.global_limits)
    acceptable = np.zeros(gen.n_frames, bool)
    acceptable[frames] = report.acceptable
    reasons = [["non-finite: NaN or inf coordinates"] for _ in range(gen.n_frames)]
    for f, r in zip(frames, report.reasons):
        reasons[f] = r
    v["acceptable_frames"] = int(acceptable.sum())
    v["acceptable_fraction"] = float(acceptable.mean()) if gen.n_frames else 0.0
    v["acceptable"] = "valid (local checks) and globally plausible (compaction, native contacts" + (
        ", distance to the reference)" if ref is not None else ")"
    )
    metrics["global"] = report.summary()
    metrics["global"]["start"] = metrics["inputs"].get("start")
    metrics["global"]["implausible"] = [{"frame": int(f), "reasons": r} for f, r in enumerate(reasons) if r]
    data.global_report, data.acceptable = report, acceptable


def _kinetics(g, ref, gi, ri, data, options):
    from mdllm.evaluate import divergence, kinetics

    out: dict = {}
    base = ref if ref is not None else g
    base_index = ri if ref is not None else gi
    gen_features = kinetics.ca_distance_features(g.xyz[:, gi, 1])
    base_features = kinetics.ca_distance_features(base.xyz[:, base_index, 1])
    if len(base) < 10:
        out["skipped"] = f"TICA needs at least 10 frames of the {'reference' if ref is not None else 'trajectory'}"
        return out
    tica = kinetics.fit_tica(base_features, gen_features, lagtime=options.tica_lag)
    out["tica"] = {
        "fitted_on": "reference" if ref is not None else "generated",
        "lag_frames": tica.lagtime,
        "features": "CA-CA distances of up to 60 evenly spaced residues",
        "principal_components": tica.n_pcs,
        "eigenvalues": tica.eigenvalues.tolist(),
    }
    data.tica_base, data.tica_gen = tica.reference, tica.generated
    if ref is not None:
        both = np.concatenate([tica.reference, tica.generated])
        lo, hi = both.min(0), both.max(0) + 1e-9
        out["js_distance"] = {
            f"tic{k + 1}": divergence.js_1d(tica.generated[:, k], tica.reference[:, k], None, (lo[k], hi[k]))
            for k in range(2)
        }
        out["js_distance"]["tic1_tic2"] = divergence.js_2d(
            tica.generated, tica.reference, None, [(lo[0], hi[0]), (lo[1], hi[1])]
        )
    centres = kinetics.cluster(tica.reference, options.n_clusters, options.seed)
    timestep = g.timestep or 1.0
    runs = [("generated", centres.transform(np.ascontiguousarray(tica.generated)), timestep)]
    if ref is not None:
        runs.append(("reference", centres.transform(np.ascontiguousarray(tica.reference)), ref.timestep or 1.0))
    # One counting scheme for both, so their timescales compare.
    symmetrize = any(kinetics.needs_symmetrized_counts(d, kinetics.lag_grid(len(d))) for _, d, _ in runs)
    msm = {}
    for name, dtraj, dt in runs:
        its = kinetics.implied_timescales(dtraj, kinetics.lag_grid(len(dtraj)), symmetrize=symmetrize)
        msm[name] = {
            "lag_ps": [l * dt for l in its.lagtimes],
            "timescales_ps": [[t * dt for t in row] for row in its.timescales],
            "active_fraction": its.active_fraction,
            "counts": its.counts,
            "clusters_visited": int(len(np.unique(dtraj))),
        }
    out["msm"] = {"clusters": int(centres.n_clusters), "clustered_on": out["tica"]["fitted_on"], **msm}
    data.msm = msm
    return out


def _rebuild(g, ref, out_dir, options, data):
    from mdllm.evaluate.rebuild import Rebuilder, rebuild_frames
    from mdllm.io import save

    out = {}
    rebuilder = None  # one side-chain template and one set of OpenMM contexts per protein
    for name, traj in (("generated", g),) + ((("reference", ref),) if ref is not None else ()):
        n = min(options.rebuild_frames, traj.n_frames)
        frames = np.unique(np.linspace(0, traj.n_frames - 1, n).astype(int))
        if rebuilder is None or (rebuilder.sequence, rebuilder.chain_ids) != (traj.sequence, list(traj.chain_ids)):
            rebuilder = Rebuilder(
                traj.sequence,
                traj.chain_ids,
                threads=options.rebuild_threads,
                max_iterations=options.max_iterations,
                solvent_iterations=options.solvent_iterations,
            )
        result = rebuild_frames(
            traj.xyz,
            traj.sequence,
            traj.chain_ids,
            frames,
            progress=options.progress,
            label=f"rebuild {name}",
            rebuilder=rebuilder,
        )
        out[name] = result.summary()
        out[name]["per_frame"] = [
            {
                "frame": int(f),
                "energy_before_kj_mol": b,
                "energy_after_kj_mol": a,
                "drift_A": d,
                "max_displacement_A": x,
                "sane": s,
                "error": e or None,
            }
            for f, b, a, d, x, s, e in zip(
                result.frames,
                result.energy_before,
                result.energy_after,
                result.drift_A,
                result.max_displacement_A,
                result.sane,
                result.errors,
            )
        ]
        if name == "generated" and result.trajectory is not None:
            out[name]["written"] = [str(p) for p in save(result.trajectory, out_dir / "allatom.dcd")]
        data.rebuild[name] = result
    return out


def _plain(obj):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    return obj
