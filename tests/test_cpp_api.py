"""The C++ core used without Python: configure and build with CMake, run the C++ tests and example."""

import subprocess

import pytest


@pytest.mark.slow  # builds the C++ library, examples and tests from scratch
def test_cpp_library_builds_and_its_tests_pass(cpp_build):
    result = subprocess.run(["ctest", "--test-dir", cpp_build, "--output-on-failure"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout
