"""The installed `mdllm` console script, run as a user would."""

from conftest import DATA
from conftest import run_mdllm as mdllm


def test_help_lists_commands():
    from mdllm.cli import COMMANDS

    out = mdllm("--help")
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.splitlines() if len(line) - len(line.lstrip()) == 4]
    assert listed == COMMANDS  # every command, in order (4-space indent; wrapped help lines are deeper)


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
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(None, 1) for line in out.stdout.splitlines() if " " in line)
    assert fields["frames"].strip() == "3" and fields["residues"].strip() == "20"
    assert "NLYIQWLKDGGPSSGRPPPS" in out.stdout


def test_bad_input_is_one_line_and_nonzero():
    out = mdllm("info", DATA / "adk_dims_10.dcd")
    assert out.returncode == 1
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("mdllm info: error:") and "adk_dims_10.dcd" in lines[0] and "topology" in lines[0]


def test_run_and_evaluate_parse_states_alike():
    # one parser for --state: the same one-line error from both commands, before any work starts
    for command in (
        ("run", DATA / "1L2Y_3models.pdb", "-o", "unused"),
        ("evaluate", DATA / "1L2Y_3models.pdb", "-o", "unused"),
    ):
        out = mdllm(*command, "--state", "open.pdb")
        lines = [l for l in out.stderr.splitlines() if l.strip()]
        assert out.returncode == 1 and len(lines) == 1, out.stderr
        assert "--state expects NAME=PDB, got 'open.pdb'" in lines[0]


def test_run_with_an_unknown_preset_is_a_clear_error(tmp_path):
    import pytest

    from mdllm.errors import MdllmError
    from mdllm.pipeline import run

    out = mdllm("run", DATA / "1L2Y_3models.pdb", "-o", tmp_path, "--preset", "nonsense")
    assert out.returncode == 2 and "invalid choice: 'nonsense'" in out.stderr.splitlines()[-1]
    with pytest.raises(MdllmError, match="unknown preset 'nonsense'"):
        run(DATA / "1L2Y_3models.pdb", tmp_path, preset="nonsense")
