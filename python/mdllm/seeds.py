"""Reproducible randomness shared by simulation and evaluation: a neutral low-level module, so that
neither has to import the other for it."""

from __future__ import annotations

import contextlib
import random


@contextlib.contextmanager
def seeded_python_random(seed: int):
    """Seed Python's global ``random`` for a block, then put its previous state back: OpenMM's Modeller
    places new hydrogens and ions at random, so this makes preparation and rebuilds reproducible."""
    saved = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)
