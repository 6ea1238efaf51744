"""PNG figures of an evaluation (matplotlib, Agg backend). Each function draws one figure from the
:class:`~mdllm.evaluate.results.EvaluationData` that ``pipeline.evaluate`` collected and returns the
file name, or None when its data is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mdllm.evaluate.results import EvaluationData
from mdllm.files import atomic_output

GEN_COLOUR, REF_COLOUR = "#d62728", "#1f77b4"


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path.name


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def rmsd_traces(out: Path, data: EvaluationData) -> str | None:
    if data.gen_rmsd is None:
        return None
    fig, ax = _figure(figsize=(7, 4))
    colours = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for k, name in enumerate(data.state_names):
        c = colours[k % len(colours)]
        ax.plot(data.gen_time, data.gen_rmsd[k], color=c, lw=1.8, label=f"generated: to {name}")
        if data.ref_rmsd is not None:
            ax.plot(data.ref_time, data.ref_rmsd[k], color=c, lw=1.2, ls="--", label=f"reference: to {name}")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("CA RMSD (Å)")
    ax.set_title("RMSD to named states")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out / "rmsd_traces.png")


def _free_energy(ax, x, y, bins, ranges, title, xlabel, ylabel, vmax=None):
    hist, xe, ye = np.histogram2d(x, y, bins=bins, range=ranges)
    with np.errstate(divide="ignore"):
        g = -np.log(hist / hist.sum())
    g -= np.nanmin(g[np.isfinite(g)])
    image = ax.imshow(
        np.where(np.isfinite(g), g, np.nan).T,
        origin="lower",
        aspect="auto",
        cmap="viridis",
        extent=[xe[0], xe[-1], ye[0], ye[-1]],
        vmin=0,
        vmax=vmax,
    )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return image, g


def free_energy(out: Path, data: EvaluationData, kind: str) -> str | None:
    """Free energy -ln p (kT) on TIC 1-2 (kind 'tica') or on the RMSDs to two states ('states')."""
    if kind == "tica":
        if data.tica_gen is None:
            return None
        panels = [("generated", data.tica_gen)]
        if data.ref_rmsd is not None or data.ref_phi is not None:
            panels.insert(0, ("reference", data.tica_base))
        labels = ("TIC 1 (kinetic map, dimensionless)", "TIC 2 (kinetic map, dimensionless)")
        name = "fes_tica.png"
    else:
        if data.gen_rmsd is None or data.gen_rmsd.shape[0] != 2:
            return None
        panels = [("generated", data.gen_rmsd.T)]
        if data.ref_rmsd is not None:
            panels.insert(0, ("reference", data.ref_rmsd.T))
        labels = tuple(f"CA RMSD to {n} (Å)" for n in data.state_names)
        name = "fes_states.png"
    both = np.concatenate([p for _, p in panels])
    pad = 0.05 * (both.max(0) - both.min(0) + 1e-9)
    ranges = [
        (both[:, 0].min() - pad[0], both[:, 0].max() + pad[0]),
        (both[:, 1].min() - pad[1], both[:, 1].max() + pad[1]),
    ]
    fig, axes = _figure(1, len(panels), figsize=(5.4 * len(panels), 4.5), squeeze=False, layout="constrained")
    bins = 25 if min(len(p) for _, p in panels) < 2000 else 50
    vmax = None
    for ax, (title, points) in zip(axes[0], panels):
        image, g = _free_energy(ax, points[:, 0], points[:, 1], bins, ranges, title, *labels, vmax=vmax)
        vmax = vmax or float(np.nanmax(g[np.isfinite(g)]))
        image.set_clim(0, vmax)
    fig.colorbar(image, ax=axes[0].tolist(), label="free energy (kT)")
    fig.suptitle(
        "Free-energy surface " + ("on TICA 1-2 (fitted on the reference)" if kind == "tica" else "on state RMSDs")
    )
    import matplotlib.pyplot as plt

    with atomic_output(out / name) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return name


def ramachandran(out: Path, data: EvaluationData) -> str:
    from mdllm.geometry import ramachandran as rama

    panels = [("generated", data.gen_phi, data.gen_psi)]
    if data.ref_phi is not None:
        panels.insert(0, ("reference", data.ref_phi, data.ref_psi))
    levels, bin_deg = rama.grid()
    fig, axes = _figure(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
    centres = np.arange(-180 + bin_deg / 2, 180, bin_deg)
    for ax, (title, phi, psi) in zip(axes[0], panels):
        ok = np.isfinite(phi) & np.isfinite(psi)
        from matplotlib.colors import LogNorm

        ax.hist2d(phi[ok], psi[ok], bins=90, range=[[-180, 180], [-180, 180]], cmap="magma_r", cmin=1, norm=LogNorm())
        ax.contour(centres, centres, levels[0].T, levels=[0.5, 1.5], colors=["#1f77b4", "#2ca02c"], linewidths=1)
        ax.set_xlim(-180, 180), ax.set_ylim(-180, 180)
        ax.set_xticks(range(-180, 181, 90)), ax.set_yticks(range(-180, 181, 90))
        ax.set_xlabel("phi (degrees)")
        ax.set_ylabel("psi (degrees)")
        ax.set_title(f"{title}: all residues, all frames")
    fig.text(
        0.5,
        0.01,
        "counts per 4-degree bin, log colour scale; contours (general residues): blue = allowed, green = favoured",
        ha="center",
        fontsize=8,
    )
    return _save(fig, out / "ramachandran.png")


def rmsf(out: Path, data: EvaluationData) -> str:
    fig, ax = _figure(figsize=(7, 3.8))
    residues = data.rmsf_residues
    if data.ref_rmsf is not None:
        ax.plot(residues, data.ref_rmsf, color=REF_COLOUR, lw=1.2, label="reference")
    ax.plot(residues, data.gen_rmsf, color=GEN_COLOUR, lw=1.2, label="generated")
    ax.set_xlabel("residue number")
    ax.set_ylabel("CA RMSF (Å)")
    ax.set_title("Per-residue fluctuations")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out / "rmsf.png")


def pairwise(out: Path, data: EvaluationData) -> str:
    fig, ax = _figure(figsize=(6, 3.8))
    ref_pairs = data.ref_pairs if data.ref_pairs is not None else np.zeros(1)
    hi = max(data.gen_pairs.max(initial=0), ref_pairs.max(initial=0))
    edges = np.linspace(0, hi + 1e-6, 50)
    if data.ref_pairs is not None:
        ax.hist(data.ref_pairs, edges, density=True, color=REF_COLOUR, alpha=0.5, label="reference")
    ax.hist(data.gen_pairs, edges, density=True, color=GEN_COLOUR, alpha=0.5, label="generated")
    ax.set_xlabel("pairwise CA RMSD between frames (Å)")
    ax.set_ylabel("density (1/Å)")
    ax.set_title("Pairwise-RMSD distribution")
    ax.legend(fontsize=8)
    return _save(fig, out / "pairwise_rmsd.png")


def implied_timescales(out: Path, data: EvaluationData) -> str | None:
    msm = data.msm
    if not msm:
        return None
    fig, ax = _figure(figsize=(6, 4))
    for name, colour in (("reference", REF_COLOUR), ("generated", GEN_COLOUR)):
        if name not in msm:
            continue
        lags = np.asarray(msm[name]["lag_ps"], float)
        ts = np.asarray(msm[name]["timescales_ps"], float)
        for k in range(ts.shape[1]):
            ax.plot(
                lags,
                ts[:, k],
                "o-",
                color=colour,
                alpha=1.0 - 0.25 * k,
                ms=3,
                label=f"{name} ({msm[name]['counts']})" if k == 0 else None,
            )
    all_lags = np.concatenate([np.asarray(m["lag_ps"], float) for m in msm.values()])
    ax.set_yscale("log")
    bottom = ax.get_ylim()[0]
    ax.fill_between(
        [all_lags.min(), all_lags.max()],
        [all_lags.min(), all_lags.max()],
        bottom,
        color="grey",
        alpha=0.2,
        label="timescale < lag (unresolved)",
    )
    ax.set_ylim(bottom=bottom)
    ax.set_xlabel("lag time (ps)")
    ax.set_ylabel("implied timescale (ps)")
    ax.set_title("MSM implied timescales (3 slowest)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out / "implied_timescales.png")


def validity(out: Path, data: EvaluationData) -> str:
    """Worst bond/angle deviation and Ramachandran outliers per frame against their limits; invalid
    frames shaded red."""
    v = data.validity
    frames = np.arange(v.n_frames)
    fig, (top, bottom) = _figure(2, 1, figsize=(7, 5), sharex=True)
    for ax in (top, bottom):
        for f in np.flatnonzero(~v.valid):
            ax.axvspan(f - 0.5, f + 0.5, color="#d62728", alpha=0.25, lw=0)
    finite = np.where(v.finite, 1.0, np.nan)
    top.plot(frames, v.worst_bond_z * finite, color="k", lw=1, label="worst bond length")
    top.plot(frames, v.worst_angle_z * finite, color="#ff7f0e", lw=1, label="worst bond angle")
    top.axhline(v.limits.max_z, color="grey", ls="--", lw=1, label=f"limit ({v.limits.max_z:g} sigma)")
    top.set_ylabel("deviation from ideal\n(Engh & Huber sigmas)")
    top.set_yscale("log")
    top.legend(fontsize=8, loc="upper right")
    top.set_title(f"Backbone validity: {int(v.valid.sum())} of {v.n_frames} frames valid (invalid shaded red)")
    bottom.plot(frames, 100 * v.rama_outlier_fraction * finite, color="#1f77b4", lw=1, label="Ramachandran outliers")
    bottom.axhline(100 * v.limits.max_rama_outlier_fraction, color="#1f77b4", ls="--", lw=1, label="outlier limit")
    bottom.set_ylabel("Ramachandran\noutliers (% of residues)")
    bottom.set_xlabel("frame")
    clashes = bottom.twinx()
    clashes.plot(frames, v.n_clashes * finite, color="#2ca02c", lw=1, label="clashing atom pairs")
    clashes.set_ylabel("clashing backbone\natom pairs", color="#2ca02c")
    lines = bottom.get_legend_handles_labels()[0] + clashes.get_legend_handles_labels()[0]
    bottom.legend(lines, [l.get_label() for l in lines], fontsize=8, loc="upper right")
    return _save(fig, out / "validity.png")


def make_all(out: Path, data: EvaluationData) -> list[str]:
    """Every figure that ``data`` has the arrays for; returns their file names in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    names = [
        validity(out, data),
        rmsd_traces(out, data),
        free_energy(out, data, "tica"),
        free_energy(out, data, "states"),
        ramachandran(out, data),
        rmsf(out, data),
        pairwise(out, data),
        implied_timescales(out, data),
    ]
    return [n for n in names if n]
