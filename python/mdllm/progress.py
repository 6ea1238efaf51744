"""Progress bars of the package: one switch for all of them.

Every long step (simulation, training, generation, refinement, evaluation, rebuild) shows a tqdm bar
made here. ``mdllm --quiet`` on the command line, or :func:`set_quiet` from Python, silences all of
them for scripts and logs; a function's own ``progress`` argument still switches its bar off alone.
"""

from __future__ import annotations

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Silence (or restore) every progress bar of mdllm in this process."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    return _quiet


def bar(iterable=None, enabled: bool | None = True, **kwargs):
    """A tqdm bar (a notebook widget under Jupyter), disabled when ``enabled`` is false or mdllm is
    quiet; ``enabled=None`` shows it only on a terminal."""
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    disable = True if _quiet or enabled is False else (None if enabled is None else False)
    return tqdm(iterable, disable=disable, **kwargs)
