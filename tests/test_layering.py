"""Layers of the package: geometry is below evaluation and simulation, so nothing in mdllm.geometry
may import mdllm.evaluate or mdllm.simulate (not even inside a function). Checked on the source by
walking every import statement, and by importing each package in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PYTHON = Path(__file__).resolve().parents[1] / "python"


def _modules() -> dict[str, Path]:
    out = {}
    for path in (PYTHON / "mdllm").rglob("*.py"):
        parts = list(path.relative_to(PYTHON).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """mdllm modules that ``name`` imports anywhere (module level or in functions), with their parent
    packages, since importing a module runs its package's __init__."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    out = set()
    for module in found:
        parts = module.split(".")
        out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in MODULES}
    return out


def reachable(package: str) -> dict[str, str]:
    """Every mdllm module that importing any module of ``package`` can reach -> the module that imports it."""
    seeds = [m for m in MODULES if m == package or m.startswith(package + ".")]
    via = {m: "" for m in seeds}
    stack = list(seeds)
    while stack:
        module = stack.pop()
        for dep in _imports(module):
            if dep not in via:
                via[dep] = module
                stack.append(dep)
    return via


def _chain(via, module):
    chain = [module]
    while via.get(chain[-1]):
        chain.append(via[chain[-1]])
    return " <- ".join(chain)


def test_the_walk_sees_known_imports():
    assert "mdllm.geometry" in _imports("mdllm.evaluate.validity")
    assert "mdllm.simulate.prepare" in reachable("mdllm.simulate")


def test_geometry_imports_neither_evaluate_nor_simulate():
    via = reachable("mdllm.geometry")
    bad = [_chain(via, m) for m in sorted(via) if m.startswith(("mdllm.evaluate", "mdllm.simulate"))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["mdllm.geometry", "mdllm.evaluate", "mdllm.simulate"])
def test_each_package_imports_on_its_own(package):
    code = (
        f"import sys, {package}; "
        "print(sorted(m for m in sys.modules if m.startswith(('mdllm.evaluate', 'mdllm.simulate'))))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    if package == "mdllm.geometry":
        assert r.stdout.strip() == "[]"
