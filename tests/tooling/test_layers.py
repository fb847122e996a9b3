"""The layer contracts (import-linter, pyproject.toml) hold, and would catch an upward import."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
lint_imports = importlib.import_module("lint_imports")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("importlinter") is None, reason="import-linter not installed"
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return lint_imports.stage(tmp_path_factory.mktemp("tree"))


def _with_import(tree: Path, module: str, line: str) -> None:
    path = tree / Path(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text() + f"\n{line}\n")


def test_contracts_kept(tree):
    assert lint_imports.lint(tree) == 0


def test_staged_tree_has_every_package(tree):
    for pkg in ("host/contracts", "host/export", "host/driver", "host/estimate", "host/app"):
        assert (tree / "edgemoe" / pkg / "__init__.py").is_file()
    assert (tree / "edgemoe" / "sim" / "rtl" / "__init__.py").is_file()
    assert (tree / "edgemoe" / "models" / "m3vit.py").is_file()


@pytest.mark.parametrize(
    "module, line",
    [
        # a contract reaching up to the application
        ("edgemoe.host.contracts.tiling", "from edgemoe.host.app import cli  # noqa"),
        # export reaching the driver
        ("edgemoe.host.export.quantize", "import edgemoe.host.driver.backends  # noqa"),
        # the host -> sim import issue 16 found (hls_params took accumulator_bits from golden)
        ("edgemoe.host.export.hls_params", "from edgemoe.sim import golden  # noqa"),
        # the float model importing the host
        ("edgemoe.models.config", "import edgemoe.host.contracts.profile  # noqa"),
    ],
)
def test_an_upward_import_breaks_a_contract(tmp_path, module, line):
    tree = lint_imports.stage(tmp_path)
    _with_import(tree, module, line)
    assert lint_imports.lint(tree) != 0
