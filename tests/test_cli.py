"""The installed `mdllm` console script, run as a user would."""

from conftest import DATA
from conftest import run_mdllm as mdllm


def test_help_lists_commands():
    out = mdllm("--help")
    assert out.returncode == 0
    assert "info" in out.stdout


def test_info_on_a_trajectory():
    out = mdllm("info", DATA / "adk_dims_10.dcd", "--top", DATA / "adk.psf")
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(None, 1) for line in out.stdout.splitlines() if " " in line)
    assert fields["frames"].strip() == "10"
    assert fields["residues"].strip() == "214"
    assert "1 ps" in out.stdout
    assert "MRIILLGAPGAGKGTQAQ" in out.stdout


def test_info_on_an_nmr_ensemble():
    out = mdllm("info", DATA / "1L2Y_3models.pdb")
    assert out.returncode == 0
    assert "NLYIQWLKDGGPSSGRPPPS" in out.stdout


def test_bad_input_is_one_line_and_nonzero():
    out = mdllm("info", DATA / "adk_dims_10.dcd")
    assert out.returncode == 1
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("mdllm info: error:") and "adk_dims_10.dcd" in lines[0] and "topology" in lines[0]
