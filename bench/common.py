"""Shared helpers for the benchmark scripts: timing, the AdK data, and the table + JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADK = ROOT / "data" / "adk"
ADK_TRANSITIONS = ["adk_dims", "adk_dims2", "adk_gbis_tmd-fast1_NAMD"]


def best_time(fn, repeats: int = 5, min_seconds: float = 0.2) -> float:
    """Best wall time of one call over several runs (after one warm-up call)."""
    fn()
    best = float("inf")
    start = time.perf_counter()
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if i >= 1 and time.perf_counter() - start > max(min_seconds, 20 * best):
            break
    return best


def load_adk_transitions():
    """All three closed->open AdK transitions, concatenated (300 frames, 214 residues)."""
    import numpy as np

    from mdllm.io import Backbone, load_backbone

    parts = [load_backbone(ADK / f"{n}.xtc", top=ADK / f"{n}.pdb") for n in ADK_TRANSITIONS]
    first = parts[0]
    xyz = np.concatenate([p.xyz for p in parts])
    return Backbone(xyz, first.sequence, first.residue_ids, first.chain_ids, np.arange(len(xyz), dtype=float))


def machine() -> dict:
    return {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}


def report(title: str, columns: list[str], rows: list[list], result: dict) -> None:
    """Print a fixed-width table, then the result as one JSON line (always the last line)."""
    table(title, columns, rows)
    print(json.dumps(result))


def table(title: str, columns: list[str], rows: list[list]) -> None:
    """Print a title and a fixed-width table."""
    print(title)
    widths = [max(len(str(c)), *(len(_fmt(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(v).ljust(w) for v, w in zip(r, widths)))


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
