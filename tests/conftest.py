import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
ADK = ROOT / "data" / "adk"


def run_mdllm(*args):
    """The `mdllm` command as a user runs it, in a subprocess of this interpreter."""
    return subprocess.run([sys.executable, "-m", "mdllm", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory):
    """The repository configured and built directly with CMake (C++ library, examples, C++ tests),
    finding llama.cpp through this interpreter's llama-cpp-python."""
    import shutil

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not on PATH")
    build = tmp_path_factory.mktemp("cpp-build")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        [
            cmake,
            "-S",
            ROOT,
            "-B",
            build,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython_EXECUTABLE={sys.executable}",
            *generator,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run([cmake, "--build", build, "--parallel", "2"], check=True, capture_output=True)
    return build
