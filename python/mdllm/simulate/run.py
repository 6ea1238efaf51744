"""Run a prepared system at several temperatures and replicas, round-robin, each run committing
its frames and checkpoint every few minutes and resuming from the last commit."""

from __future__ import annotations

import datetime
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file
from mdllm.files import atomic_output, sha256_file
from mdllm.simulate.checkpoint import RunStore, read_json, write_json
from mdllm.seeds import seeded_python_random
from mdllm.simulate.reporters import Progress, positions_nm, saved_atoms
from mdllm.simulate.system import (
    Physics,
    add_barostat,
    create_system,
    load_forcefield,
    make_integrator,
    platform_candidates,
    solvate,
)

SETUP = "setup.json"
MINIMIZE_TOLERANCE_KJ_MOL_NM = 10.0
PREPARATION_SEED = 2024


@dataclass(frozen=True)
class Preparation:
    """How the start structure is repaired (see :func:`mdllm.simulate.prepare.prepare_structure`)."""

    chains: tuple[str, ...] | None = None
    ph: float = 7.0
    keep_water: bool = False
    keep_ligands: bool = False


@dataclass(frozen=True)
class Plan:
    """What to run and what to keep. ``length_ns`` may grow between invocations (the runs extend);
    the other fields are fixed once a directory holds runs."""

    temperatures: tuple[float, ...] = (300.0,)
    replicas: int = 1
    seed: int = 0
    length_ns: float = 10.0
    save_every_ps: float = 10.0
    equilibrate_ps: float = 100.0
    save_atoms: str = "heavy"
    format: str = "xtc"

    def steps(self, physics: Physics, ps: float, what: str) -> int:
        steps = ps * 1000.0 / physics.timestep_fs
        if abs(steps - round(steps)) > 1e-6:
            raise MdllmError(f"{what} ({ps} ps) must be a whole number of {physics.timestep_fs} fs steps")
        return int(round(steps))


def derive_seed(base_seed: int, temperature_k: float, replica: int) -> int:
    """A nonzero 31-bit seed per (temperature, replica), independent of the order runs are listed in."""
    state = np.random.SeedSequence([base_seed, int(round(temperature_k * 1000)), replica]).generate_state(1)[0]
    return int(state % (2**31 - 2)) + 1


def simulate(
    start,
    out_dir,
    prep: Preparation = Preparation(),
    physics: Physics = Physics(),
    plan: Plan = Plan(),
    platform: str | None = None,
    threads: int = 0,
    checkpoint_minutes: float = 5.0,
    max_minutes: float | None = None,
    command: str | None = None,
    show_progress: bool | None = None,
) -> list[dict]:
    """Simulate ``start`` into ``out_dir`` (one sub-folder per temperature and replica); resume what
    is there. Returns the manifest of every started run. Raises KeyboardInterrupt after a clean stop on
    SIGINT/SIGTERM (what was committed stays, and the same call resumes it)."""
    out_dir = Path(out_dir)
    if plan.format not in ("xtc", "dcd"):
        raise MdllmError(f"trajectory format must be xtc or dcd, got {plan.format!r}")
    if plan.replicas < 1 or not plan.temperatures or plan.length_ns < 0:
        raise MdllmError("need at least one temperature, one replica and a length >= 0")
    save_steps = plan.steps(physics, plan.save_every_ps, "--save-every")
    eq_steps = plan.steps(physics, plan.equilibrate_ps, "--equilibrate")
    if save_steps < 1:
        raise MdllmError("--save-every must be at least one time step")
    candidates = platform_candidates(platform, threads)
    if not candidates:
        raise MdllmError("no usable OpenMM platform")
    setup = _load_or_prepare(Path(start), out_dir, prep, physics, plan)
    command = command or " ".join(sys.argv)

    runs = [
        Replica(out_dir, setup, physics, plan, t, r, save_steps, eq_steps, candidates, command)
        for t in plan.temperatures
        for r in range(plan.replicas)
    ]
    for run in runs:
        run.refresh_trajectory()  # a kill between a commit and the trajectory write left it behind
    todo = sum(run.remaining_ps() for run in runs)
    progress = Progress(total_ps=todo, disable=None if show_progress is None else not show_progress)
    deadline = None if max_minutes is None else time.monotonic() + max_minutes * 60
    stop = StopRequest()
    try:
        with stop.installed(progress):
            active = [run for run in runs if run.remaining_ps() > 0]
            while active and not stop.is_set() and not _past(deadline):
                # Least advanced first, so that under a time limit every run gets its turn.
                active.sort(key=lambda run: (run.manifest is not None, run.frames_done()))
                for run in list(active):
                    run.open(progress)
                    commit_at = time.monotonic() + checkpoint_minutes * 60
                    if deadline is not None:
                        commit_at = min(commit_at, deadline)
                    run.advance(commit_at, stop, progress)
                    if run.remaining_ps() <= 0:
                        active.remove(run)
                        progress.write(run.summary())
                    if stop.is_set() or _past(deadline):
                        break
    finally:
        progress.close()
    if stop.is_set():
        print(
            f"stopped cleanly after the last committed frame; run the same command to resume ({out_dir})",
            file=sys.stderr,
        )
        raise KeyboardInterrupt
    not_started = [run.name for run in runs if run.manifest is None]
    if not_started:
        print(f"not started yet (time limit): {', '.join(not_started)}", file=sys.stderr)
    return [run.manifest for run in runs if run.manifest is not None]


def _past(deadline):
    return deadline is not None and time.monotonic() >= deadline


# --- setup: prepared structure and system, shared by the runs of a directory ---------------------


@dataclass
class Setup:
    record: dict  # setup.json
    system_xml: str
    topology: object
    positions: object
    save_indices: np.ndarray
    save_topology: object  # mdtraj topology of the saved atoms


def _file_sha256(path: Path) -> str:
    if not path.is_file():
        raise in_file(path, "no such file")
    return sha256_file(path)


def _load_or_prepare(start: Path, out_dir: Path, prep: Preparation, physics: Physics, plan: Plan) -> Setup:
    from openmm import XmlSerializer
    from openmm.app import PDBFile

    identity = {
        "source_sha256": _file_sha256(start),
        "preparation": asdict(prep),
        "physics": asdict(physics),
        "save_every_ps": plan.save_every_ps,
        "equilibrate_ps": plan.equilibrate_ps,
        "save_atoms": plan.save_atoms,
    }
    identity["preparation"]["chains"] = list(prep.chains) if prep.chains else None
    record = read_json(out_dir / SETUP)
    if record is not None:
        if record["identity"] != identity:
            differ = [k for k in identity if record["identity"].get(k) != identity[k]]
            raise MdllmError(
                f"{out_dir} holds runs made with other settings ({', '.join(differ)} differ); "
                "use the same settings to resume or another output directory"
            )
    else:
        from mdllm.simulate.prepare import prepare_structure

        forcefield = load_forcefield(physics)
        with seeded_python_random(PREPARATION_SEED):  # OpenMM's Modeller places new H and ions at random
            prepared = prepare_structure(
                start,
                chains=prep.chains,
                ph=prep.ph,
                keep_water=prep.keep_water,
                keep_ligands=prep.keep_ligands,
                forcefield=forcefield,
            )
            topology, positions = solvate(prepared, physics, forcefield)
        system = create_system(topology, physics, forcefield, source=start)
        saved_atoms(topology, plan.save_atoms)  # fails now, not after equilibration
        # Everything checked: only now does the output directory get files.
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_output(out_dir / "prepared.pdb") as tmp, open(tmp, "w") as handle:
            PDBFile.writeFile(topology, positions, handle, keepIds=True)
        with atomic_output(out_dir / "system.xml") as tmp:
            tmp.write_text(XmlSerializer.serialize(system))
        record = {
            "format": "mdllm.simulate.setup/1",
            "identity": identity,
            "source": str(start),
            "preparation_notes": prepared.notes,
            "physics": physics.describe(),
            "total_atoms": topology.getNumAtoms(),
            "created": _now(),
        }
        write_json(out_dir / SETUP, record)
    # Runs always start from the files on disk, so a fresh run and a resumed setup are identical.
    pdb = PDBFile(str(out_dir / "prepared.pdb"))
    indices, save_topology = saved_atoms(pdb.topology, plan.save_atoms)
    return Setup(record, (out_dir / "system.xml").read_text(), pdb.topology, pdb.positions, indices, save_topology)


# --- one run: a temperature and a replica --------------------------------------------------------


class Replica:
    def __init__(
        self,
        out_dir,
        setup: Setup,
        physics: Physics,
        plan: Plan,
        temperature_k: float,
        replica: int,
        save_steps: int,
        eq_steps: int,
        candidates,
        command: str,
    ):
        self.name = f"T{temperature_k:g}K_rep{replica}"
        self.store = RunStore(Path(out_dir) / self.name)
        self.setup, self.physics, self.plan = setup, physics, plan
        self.temperature_k, self.replica = float(temperature_k), replica
        self.seed = derive_seed(plan.seed, temperature_k, replica)
        self.save_steps, self.eq_steps = save_steps, eq_steps
        self.target_frames = int(round(plan.length_ns * 1000.0 / plan.save_every_ps))
        self.candidates, self.command = candidates, command
        self.simulation = None
        self.manifest = self.store.manifest()
        self.session_ps, self.session_seconds = 0.0, 0.0

    def frames_done(self) -> int:
        return 0 if self.manifest is None else self.manifest["progress"]["frames"]

    def remaining_ps(self) -> float:
        todo = max(0, self.target_frames - self.frames_done()) * self.plan.save_every_ps
        return todo + (self.plan.equilibrate_ps if self.manifest is None else 0.0)

    def open(self, progress: Progress) -> None:
        """Create the OpenMM simulation: from the last commit, or minimized and equilibrated anew."""
        if self.simulation is not None:
            return
        from openmm import XmlSerializer

        system = add_barostat(XmlSerializer.deserialize(self.setup.system_xml), self.physics, self.temperature_k)
        self.simulation = self._create_simulation(system)
        if self.manifest is not None:
            removed = self.store.discard_uncommitted(self.manifest)
            how = self.store.restore(self.simulation, self.manifest)
            if how != "checkpoint":
                progress.write(f"{self.name}: binary checkpoint not loadable here; resumed from the portable state")
            if removed:
                progress.write(f"{self.name}: removed {len(removed)} file(s) of an interrupted commit")
            self._note_command()
            return
        self._equilibrate(progress)

    def _create_simulation(self, system):
        from openmm.app import Simulation

        errors = []
        for platform, properties in self.candidates:
            try:
                integrator = make_integrator(self.physics, self.temperature_k, self.seed)
                simulation = Simulation(self.setup.topology, system, integrator, platform, properties)
                self.platform = platform.getName()
                return simulation
            except Exception as exc:  # no device, no driver: try the next platform
                errors.append(f"{platform.getName()}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}")
        raise MdllmError("no OpenMM platform could run this system (" + "; ".join(errors) + ")")

    def _equilibrate(self, progress: Progress) -> None:
        from openmm import unit

        sim = self.simulation
        sim.context.setPositions(self.setup.positions)
        if self.setup.topology.getPeriodicBoxVectors() is not None:
            sim.context.setPeriodicBoxVectors(*self.setup.topology.getPeriodicBoxVectors())
        progress.write(
            f"{self.name}: minimizing, then equilibrating {self.plan.equilibrate_ps:g} ps at "
            f"{self.temperature_k:g} K (seed {self.seed}, platform {self.platform})"
        )
        sim.minimizeEnergy(tolerance=MINIMIZE_TOLERANCE_KJ_MOL_NM * unit.kilojoule_per_mole / unit.nanometer)
        sim.context.setVelocitiesToTemperature(self.temperature_k * unit.kelvin, self.seed)
        sim.currentStep = 0
        started = time.perf_counter()
        piece = max(1, self.save_steps)
        while sim.currentStep < self.eq_steps:
            n = min(piece, self.eq_steps - sim.currentStep)
            sim.step(n)
            progress.advance(n * self.physics.timestep_fs / 1000.0, self.name)
        self.manifest = self._new_manifest()
        self.manifest["equilibration_wall_seconds"] = round(time.perf_counter() - started, 1)
        self.manifest = self.store.commit(sim, self.manifest, [], [], [])

    def advance(self, commit_at: float, stop, progress: Progress) -> None:
        """Produce frames until ``commit_at`` (monotonic clock), the target, or a stop request; commit."""
        sim = self.simulation
        dt_ps = self.physics.timestep_fs / 1000.0
        start_step = self.manifest["progress"]["production_start_step"]
        xyz, times, steps = [], [], []
        started = time.perf_counter()
        while (
            self.frames_done() + len(xyz) < self.target_frames
            and not stop.is_set()
            and (not xyz or time.monotonic() < commit_at)
        ):
            sim.step(self.save_steps)
            xyz.append(positions_nm(sim, self.setup.save_indices))
            steps.append(int(sim.currentStep))
            times.append((steps[-1] - start_step) * dt_ps)
            progress.advance(self.plan.save_every_ps, self.name)
        elapsed = time.perf_counter() - started
        self.session_seconds += elapsed
        self.session_ps += len(xyz) * self.plan.save_every_ps
        self._update_manifest(len(xyz), elapsed)
        self.manifest = self.store.commit(sim, self.manifest, np.array(xyz), np.array(times), np.array(steps))
        if xyz:
            self._write_trajectory()

    def refresh_trajectory(self) -> None:
        if self.manifest is None or self.manifest["progress"]["frames"] == 0:
            return
        trajectory = self.store.dir / self.manifest["trajectory"]
        manifest_file = self.store.dir / "manifest.json"
        if not trajectory.exists() or trajectory.stat().st_mtime < manifest_file.stat().st_mtime:
            self._write_trajectory()

    def _write_trajectory(self) -> None:
        import mdtraj as md

        from mdllm.io import save

        xyz, time_ps, _ = self.store.frames(self.manifest)
        traj = md.Trajectory(xyz, self.setup.save_topology, time=time_ps)
        save(traj, self.store.dir / f"trajectory.{self.plan.format}")

    def _new_manifest(self) -> dict:
        import openmm

        import mdllm

        setup = self.setup.record
        notes = setup["preparation_notes"]
        return {
            "format": "mdllm.simulate.run/1",
            "name": self.name,
            "system": {
                "source": setup["source"],
                "source_sha256": setup["identity"]["source_sha256"],
                "sequence": notes.get("sequence"),
                "residues": notes.get("residues"),
                "chains": notes.get("chains"),
                "total_atoms": setup["total_atoms"],
                "preparation": {
                    **setup["identity"]["preparation"],
                    **{
                        k: notes[k]
                        for k in (
                            "replaced_nonstandard",
                            "removed",
                            "added_residues",
                            "terminal_residues_not_built",
                            "added_atoms",
                        )
                        if k in notes
                    },
                },
            },
            "forcefield": setup["physics"]["forcefield"],
            "physics": setup["physics"],
            "temperature_k": self.temperature_k,
            "replica": self.replica,
            "seed": self.seed,
            "base_seed": self.plan.seed,
            "minimization_tolerance_kj_mol_nm": MINIMIZE_TOLERANCE_KJ_MOL_NM,
            "equilibrate_ps": self.plan.equilibrate_ps,
            "save_every_ps": self.plan.save_every_ps,
            "saved_atoms": self.plan.save_atoms,
            "n_saved_atoms": int(len(self.setup.save_indices)),
            "trajectory": f"trajectory.{self.plan.format}",
            "topology": "trajectory.pdb",
            "target_length_ns": self.plan.length_ns,
            "length_ns": 0.0,
            "platform": self.platform,
            "versions": {
                "openmm": openmm.version.version,
                "mdllm": mdllm.__version__,
                "pdbfixer": _version("pdbfixer"),
            },
            "commands": [self.command],
            "wall_seconds": round(self.session_seconds, 1),
            "created": _now(),
            "updated": _now(),
            "progress": {
                "chunks": 0,
                "frames": 0,
                "step": 0,
                "checkpoint_index": None,
                "production_start_step": self.eq_steps,
            },
        }

    def _note_command(self) -> None:
        if self.command not in self.manifest["commands"]:
            self.manifest = {**self.manifest, "commands": self.manifest["commands"] + [self.command]}

    def _update_manifest(self, new_frames: int, elapsed: float) -> None:
        frames = self.frames_done() + new_frames
        m = dict(self.manifest)
        m["length_ns"] = round(frames * self.plan.save_every_ps / 1000.0, 6)
        m["target_length_ns"] = self.plan.length_ns
        m["platform"] = self.platform
        m["wall_seconds"] = round(m.get("wall_seconds", 0.0) + elapsed, 1)
        if self.session_seconds > 0 and self.session_ps > 0:
            m["last_ns_per_day"] = round(self.session_ps / 1000.0 / self.session_seconds * 86400.0, 2)
        m["updated"] = _now()
        self.manifest = m

    def summary(self) -> str:
        rate = self.manifest.get("last_ns_per_day")
        return (
            f"{self.name}: {self.frames_done()} frames, {self.manifest['length_ns']:g} ns"
            + (f", {rate:g} ns/day" if rate else "")
            + f" -> {self.store.dir / self.manifest['trajectory']}"
        )


class StopRequest:
    """First SIGINT/SIGTERM: finish the current frame, commit, stop. A second one: stop at once."""

    def __init__(self):
        self._event = threading.Event()

    def is_set(self) -> bool:
        return self._event.is_set()

    def installed(self, progress: Progress):
        request = self

        class _Handlers:
            def __enter__(self):
                self.previous = {}
                if threading.current_thread() is not threading.main_thread():
                    return self
                for sig in (signal.SIGINT, signal.SIGTERM):
                    self.previous[sig] = signal.signal(sig, self.handle)
                return self

            def handle(self, signum, frame):
                if request.is_set():
                    raise KeyboardInterrupt
                request._event.set()
                progress.write("stop requested: finishing the current frame and committing (again to abort)")

            def __exit__(self, *exc):
                for sig, handler in self.previous.items():
                    signal.signal(sig, handler)

        return _Handlers()


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
