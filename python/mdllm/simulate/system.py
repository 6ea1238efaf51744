"""Force field, solvent, integrator and platform: the physics of a run, decided in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mdllm.errors import MdllmError

PROTEIN_FF = "amber14-all.xml"
IMPLICIT_FF = "implicit/gbn2.xml"
EXPLICIT_FF = "amber14/tip3pfb.xml"
# Hydrogen mass repartitioning (heavier H, lighter heavy atom; total mass kept) allows 4 fs steps
# with bonds to hydrogen constrained.
HYDROGEN_MASS_AMU = 4.0
PLATFORM_ORDER = ("CUDA", "OpenCL", "CPU")
# Salt screening in GB is a Debye kappa; like AmberPrmtopFile we evaluate it at 298.15 K (one system
# serves every temperature), with water's dielectric 78.5 and Amber's 0.73 ion-exclusion factor.
GB_KAPPA_TEMPERATURE_K = 298.15
SOLVENT_DIELECTRIC = 78.5


def gb_kappa_per_nm(ionic_strength_molar: float) -> float:
    return 7.3 * 50.33355 * (ionic_strength_molar / SOLVENT_DIELECTRIC / GB_KAPPA_TEMPERATURE_K) ** 0.5


@dataclass(frozen=True)
class Physics:
    """Settings that define the model of a simulation (changing any of them makes a different run)."""

    solvent: str = "implicit"  # "implicit" (GBn2) or "explicit" (TIP3P-FB)
    timestep_fs: float = 4.0
    friction_per_ps: float = 1.0
    ionic_strength_molar: float = 0.15
    padding_nm: float = 1.0  # explicit solvent: protein to box edge
    pressure_bar: float = 1.0  # explicit solvent: Monte Carlo barostat

    def __post_init__(self):
        if self.solvent not in ("implicit", "explicit"):
            raise MdllmError(f"solvent must be 'implicit' or 'explicit', got {self.solvent!r}")
        if not 0 < self.timestep_fs <= 5:
            raise MdllmError(f"time step must be in (0, 5] fs, got {self.timestep_fs}")

    @property
    def forcefield_files(self) -> tuple[str, ...]:
        return (PROTEIN_FF, IMPLICIT_FF if self.solvent == "implicit" else EXPLICIT_FF)

    def describe(self) -> dict:
        return {
            **asdict(self),
            "forcefield": list(self.forcefield_files),
            "hydrogen_mass_amu": HYDROGEN_MASS_AMU,
            "constraints": "HBonds",
            "integrator": "LangevinMiddleIntegrator",
            "nonbonded": "NoCutoff" if self.solvent == "implicit" else "PME, 1.0 nm cutoff",
            **(
                {"gb_kappa_per_nm": round(gb_kappa_per_nm(self.ionic_strength_molar), 6)}
                if self.solvent == "implicit"
                else {}
            ),
        }


def load_forcefield(physics: Physics):
    from openmm.app import ForceField

    return ForceField(*physics.forcefield_files)


def solvate(prepared, physics: Physics, forcefield):
    """Explicit solvent: water box with ``padding_nm`` around the protein, neutralising ions plus salt."""
    from openmm import unit
    from openmm.app import Modeller

    if physics.solvent != "explicit":
        return prepared.topology, prepared.positions
    modeller = Modeller(prepared.topology, prepared.positions)
    modeller.addSolvent(
        forcefield,
        model="tip3p",
        padding=physics.padding_nm * unit.nanometer,
        ionicStrength=physics.ionic_strength_molar * unit.molar,
        neutralize=True,
    )
    return modeller.topology, modeller.positions


def create_system(topology, physics: Physics, forcefield, source="structure"):
    """The OpenMM System; a residue without a template is reported as bad input, not a crash."""
    from openmm import unit
    from openmm.app import PME, HBonds, NoCutoff

    kwargs = dict(constraints=HBonds, hydrogenMass=HYDROGEN_MASS_AMU * unit.amu)
    if physics.solvent == "implicit":
        kwargs.update(nonbondedMethod=NoCutoff, implicitSolventKappa=gb_kappa_per_nm(physics.ionic_strength_molar))
    else:
        kwargs.update(nonbondedMethod=PME, nonbondedCutoff=1.0 * unit.nanometer)
    try:
        system = forcefield.createSystem(topology, **kwargs)
    except ValueError as exc:
        message = str(exc).strip().splitlines()[0]
        raise MdllmError(
            f"{source}: cannot parameterise with {' + '.join(physics.forcefield_files)}: {message}"
        ) from None
    return system


def add_barostat(system, physics: Physics, temperature_k: float):
    from openmm import MonteCarloBarostat, unit

    if physics.solvent == "explicit":
        system.addForce(MonteCarloBarostat(physics.pressure_bar * unit.bar, temperature_k * unit.kelvin))
    return system


def make_integrator(physics: Physics, temperature_k: float, seed: int):
    from openmm import LangevinMiddleIntegrator, unit

    integrator = LangevinMiddleIntegrator(
        temperature_k * unit.kelvin, physics.friction_per_ps / unit.picosecond, physics.timestep_fs * unit.femtosecond
    )
    integrator.setRandomNumberSeed(seed)  # nonzero: OpenMM reads 0 as "pick one at random"
    return integrator


def platform_candidates(name: str | None, threads: int = 0):
    """(platform, properties) pairs to try in order: the named one only, or CUDA, OpenCL, CPU."""
    from openmm import Platform

    names = [name] if name else list(PLATFORM_ORDER)
    available = {Platform.getPlatform(i).getName() for i in range(Platform.getNumPlatforms())}
    if name and name not in available:
        raise MdllmError(f"OpenMM platform {name!r} is not available here (available: {', '.join(sorted(available))})")
    candidates = []
    for candidate in names:
        if candidate not in available:
            continue
        properties = {}
        if candidate in ("CUDA", "OpenCL"):
            properties["Precision"] = "mixed"
        if candidate == "CPU" and threads:
            properties["Threads"] = str(threads)
        candidates.append((Platform.getPlatformByName(candidate), properties))
    return candidates
