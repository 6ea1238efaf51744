"""What a run reports while it works: which atoms become trajectory frames, and a progress bar
with simulated time, ns/day and time left."""

from __future__ import annotations

import time

import numpy as np

from mdllm.errors import MdllmError

SAVE_SELECTIONS = {
    "protein": "protein",
    "heavy": "protein and not element H",
    "backbone": "protein and (name N or name CA or name C or name O)",
}


def saved_atoms(topology, which: str):
    """(indices, mdtraj topology) of the atoms written to the trajectory."""
    import mdtraj as md

    if which not in SAVE_SELECTIONS:
        raise MdllmError(f"--save-atoms must be one of {', '.join(SAVE_SELECTIONS)}, got {which!r}")
    md_top = md.Topology.from_openmm(topology)
    indices = md_top.select(SAVE_SELECTIONS[which])
    if len(indices) == 0:
        raise MdllmError(f"the prepared system has no atoms matching '{which}'")
    return indices, md_top.subset(indices)


def positions_nm(simulation, indices) -> np.ndarray:
    """Current positions of ``indices`` (unwrapped, so that molecules stay whole), float32 nm."""
    from openmm import unit

    state = simulation.context.getState(getPositions=True)
    return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[indices], dtype=np.float32)


class Progress:
    """One tqdm bar over the simulated picoseconds still to do across all runs of a command."""

    def __init__(self, total_ps: float, done_ps: float = 0.0, disable: bool | None = None):
        from mdllm.progress import bar

        self.bar = bar(
            total=round(total_ps, 3),
            initial=round(done_ps, 3),
            unit="ps",
            enabled=None if disable is None else not disable,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} ps [{elapsed}<{remaining}{postfix}]",
        )
        self.start = time.perf_counter()
        self.simulated_ps = 0.0

    def advance(self, ps: float, run_name: str) -> None:
        self.simulated_ps += ps
        self.bar.update(ps)
        self.bar.n = round(self.bar.n, 6)  # sums of 0.2 ps steps must still reach the total exactly
        self.bar.set_postfix_str(f"{self.ns_per_day():.1f} ns/day, {run_name}", refresh=False)

    def ns_per_day(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.simulated_ps / 1000.0 / elapsed * 86400.0 if elapsed > 0 else 0.0

    def write(self, message: str) -> None:
        self.bar.write(message)

    def close(self) -> None:
        self.bar.close()
