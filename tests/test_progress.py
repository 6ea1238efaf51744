"""One switch silences every progress bar: `mdllm --quiet` and mdllm.progress.set_quiet."""

import numpy as np
import pytest
from conftest import DATA

from mdllm import progress
from mdllm.cli import main
from mdllm.geometry.refine import refine_backbones
from mdllm.io import load_backbone


@pytest.fixture
def restore_quiet():
    yield
    progress.set_quiet(False)


def _refine_with_bar():
    bb = load_backbone(DATA / "ntl9_md300_bb.xtc", top=DATA / "ntl9_md300_bb.pdb")
    frames = np.repeat(bb.xyz[:1], 40, axis=0)  # more frames than one chunk, so the bar advances
    refine_backbones(frames, bb.sequence, progress=True)


def test_quiet_silences_a_bar_that_otherwise_shows(capsys, restore_quiet):
    _refine_with_bar()
    assert "refining" in capsys.readouterr().err
    progress.set_quiet()
    _refine_with_bar()
    assert capsys.readouterr().err == ""


def test_quiet_flag_of_the_command(capsys, restore_quiet):
    assert main(["--quiet", "info", str(DATA / "1L2Y_3models.pdb")]) == 0
    assert progress.is_quiet()
    assert "NLYIQWLKDGGPSSGRPPPS" in capsys.readouterr().out
