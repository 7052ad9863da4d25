"""The layers of docs/architecture.rst hold: imports run one way, no cycles, no private access.

The contracts live in pyproject.toml (``[tool.importlinter]``); this test runs
them, checks that they name every subpackage (a new one cannot slip past the
layers), and runs ruff's private-member rule (SLF001) over the package.
"""

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hyperspy_edxtomo"


def _contracts():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _layer_names():
    (layers,) = [c["layers"] for c in _contracts() if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in layer.replace(":", "|").split("|")]


def test_every_subpackage_and_module_is_in_a_layer():
    found = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    found |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert found == set(_layer_names()), "every top-level module of the package belongs to one layer"


def test_import_contracts_hold():
    pytest.importorskip("importlinter", reason="import-linter is a test dependency: pip install -e '.[test]'")
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hyperspy_edxtomo"):
            yield node.module, [a.name for a in node.names]


def _lint(folder):
    code = ("from importlinter.cli import lint_imports; "
            "raise SystemExit(lint_imports(config_filename='pyproject.toml', no_cache=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True)


def test_the_layer_check_sees_function_level_imports(tmp_path):
    # the contract must fail on an upward import even when it hides inside a function
    pytest.importorskip("importlinter", reason="import-linter is a test dependency")
    shutil.copytree(PACKAGE, tmp_path / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / PACKAGE.name / "base" / "counts.py"
    target.write_text(target.read_text() + "\n\ndef _up():\n    from hyperspy_edxtomo.workflow import pipeline\n")
    done = _lint(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "hyperspy_edxtomo.base.counts -> hyperspy_edxtomo.workflow.pipeline" in done.stdout


def test_no_private_name_is_imported_from_another_module():
    crossing = []
    for path in PACKAGE.rglob("*.py"):
        for module, names in _imports(path):
            crossing += [f"{path.relative_to(ROOT)}: {module}.{n}" for n in names
                         if n.startswith("_") and not n.startswith("__")]
    assert crossing == []


def test_ruff_private_member_access_is_clean():
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is a test dependency: pip install -e '.[test]'")
    done = subprocess.run([ruff, "check", "--isolated", "--select", "SLF001", "--output-format", "concise",
                           str(PACKAGE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
