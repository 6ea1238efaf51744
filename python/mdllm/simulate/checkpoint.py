"""The on-disk record of one run, committed atomically so that a kill at any instant loses at most
the frames since the last commit and never duplicates one.

A commit writes, each file atomically and in this order: the new frames as a chunk file, the
integrator checkpoint (binary, exact, includes the random-number state) and a portable XML state,
then ``manifest.json``, which names the number of committed chunks and the checkpoint to resume from.
The manifest is the commit point: on resume, any chunk or checkpoint it does not name is a leftover
of an interrupted commit and is deleted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError
from mdllm.files import atomic_output

MANIFEST = "manifest.json"
CHUNK_RE = re.compile(r"chunk_(\d{6})\.npz$")
STATE_RE = re.compile(r"(checkpoint|state)_(\d{6})\.(chk|xml)$")


def write_json(path: Path, data: dict) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


def read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MdllmError(f"{path}: unreadable ({exc}); the run cannot be resumed") from None


class RunStore:
    """Files of one run directory: chunks/, state/ and manifest.json."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.chunks_dir = self.dir / "chunks"
        self.state_dir = self.dir / "state"

    def manifest(self) -> dict | None:
        return read_json(self.dir / MANIFEST)

    def discard_uncommitted(self, manifest: dict) -> list[Path]:
        """Delete what an interrupted commit left behind: later chunks, unnamed states, temporaries."""
        removed = []
        committed = manifest["progress"]["chunks"]
        keep_state = manifest["progress"]["checkpoint_index"]
        for path in self.dir.glob(".*.part*"):  # temporaries of the manifest or trajectory
            path.unlink()
            removed.append(path)
        for folder, pattern in ((self.chunks_dir, CHUNK_RE), (self.state_dir, STATE_RE)):
            if not folder.exists():
                continue
            for path in folder.iterdir():
                match = pattern.search(path.name)
                if match is None:
                    stale = ".part" in path.name
                elif pattern is CHUNK_RE:
                    stale = int(match.group(1)) >= committed
                else:
                    stale = int(match.group(2)) != keep_state
                if stale:
                    path.unlink()
                    removed.append(path)
        return removed

    def commit(self, simulation, manifest: dict, xyz: np.ndarray, time_ps: np.ndarray, steps: np.ndarray) -> dict:
        """Store new frames and the simulation's state; return the manifest now on disk."""
        progress = dict(manifest["progress"])
        if len(xyz):
            self.chunks_dir.mkdir(parents=True, exist_ok=True)
            with atomic_output(self.chunk_path(progress["chunks"])) as tmp:
                np.savez(
                    tmp,
                    xyz=np.asarray(xyz, np.float32),
                    time_ps=np.asarray(time_ps, np.float64),
                    step=np.asarray(steps, np.int64),
                )
            progress["chunks"] += 1
            progress["frames"] += len(xyz)
        previous = progress.get("checkpoint_index")
        index = 0 if previous is None else previous + 1
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with atomic_output(self.state_dir / f"checkpoint_{index:06d}.chk") as tmp:
            simulation.saveCheckpoint(str(tmp))
        with atomic_output(self.state_dir / f"state_{index:06d}.xml") as tmp:
            simulation.saveState(str(tmp))
        progress["checkpoint_index"] = index
        progress["step"] = int(simulation.currentStep)
        manifest = {**manifest, "progress": progress}
        write_json(self.dir / MANIFEST, manifest)
        if previous is not None:
            for kind, ext in (("checkpoint", "chk"), ("state", "xml")):
                (self.state_dir / f"{kind}_{previous:06d}.{ext}").unlink(missing_ok=True)
        return manifest

    def restore(self, simulation, manifest: dict) -> str:
        """Load the committed state into ``simulation``; returns how ("checkpoint" or "state").

        The binary checkpoint continues the exact trajectory; it only loads on the same platform and
        OpenMM build, so elsewhere the portable XML state is used (same positions and velocities,
        new random numbers)."""
        index = manifest["progress"]["checkpoint_index"]
        try:
            simulation.loadCheckpoint(str(self.state_dir / f"checkpoint_{index:06d}.chk"))
            how = "checkpoint"
        except Exception:
            state_file = self.state_dir / f"state_{index:06d}.xml"
            if not state_file.exists():
                raise MdllmError(f"{self.dir}: committed state {index} is missing; the run cannot be resumed") from None
            simulation.loadState(str(state_file))
            simulation.currentStep = manifest["progress"]["step"]
            how = "state"
        if int(simulation.currentStep) != manifest["progress"]["step"]:
            raise MdllmError(
                f"{self.dir}: checkpoint is at step {simulation.currentStep} but the manifest says "
                f"{manifest['progress']['step']}; the run cannot be resumed consistently"
            )
        return how

    def chunk_path(self, index: int) -> Path:
        return self.chunks_dir / f"chunk_{index:06d}.npz"

    def frames(self, manifest: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All committed frames: xyz (F, atoms, 3) nm, time (F,) ps, step (F,)."""
        parts = []
        for i in range(manifest["progress"]["chunks"]):
            with np.load(self.chunk_path(i)) as chunk:
                parts.append((chunk["xyz"], chunk["time_ps"], chunk["step"]))
        if not parts:
            return np.zeros((0, 0, 3), np.float32), np.zeros(0), np.zeros(0, np.int64)
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))
