from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
ADK = ROOT / "data" / "adk"


@pytest.fixture(scope="session")
def adk_transition():
    """The 98-frame closed->open AdK DIMS transition (214 residues)."""
    from mdllm.io import load_backbone

    return load_backbone(ADK / "adk_dims.xtc", top=ADK / "adk_dims.pdb")
