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


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory):
    """The repository configured and built directly with CMake (C++ library, examples, C++ tests),
    finding llama.cpp through this interpreter's llama-cpp-python."""
    import shutil
    import subprocess
    import sys

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not on PATH")
    build = tmp_path_factory.mktemp("cpp-build")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run([cmake, "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                    f"-DPython_EXECUTABLE={sys.executable}", *generator], check=True, capture_output=True)
    subprocess.run([cmake, "--build", build, "--parallel", "2"], check=True, capture_output=True)
    return build
