"""The C++ core used without Python: configure and build with CMake, run the C++ tests and example."""

import shutil
import subprocess

import pytest

from conftest import ROOT

cmake = shutil.which("cmake")


@pytest.mark.skipif(cmake is None, reason="cmake not on PATH")
def test_cpp_library_builds_and_its_tests_pass(tmp_path):
    build = tmp_path / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run([cmake, "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", *generator],
                   check=True, capture_output=True)
    subprocess.run([cmake, "--build", build, "--parallel", "2"], check=True, capture_output=True)
    result = subprocess.run(["ctest", "--test-dir", build, "--output-on-failure"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout
