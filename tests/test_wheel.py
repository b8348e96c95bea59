"""The package as a user installs it: a wheel built from the checkout, installed into a fresh virtual environment
and run from a directory that has nothing of the checkout (issue 12).

The fresh environment reuses this interpreter's installed packages (torch, hydra, ...) through a .pth file instead
of installing them again; the project itself comes only from the wheel (asserted), and the checkout's own editable
install is not active there (a .pth file in a directory that another .pth file adds is not processed).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT

SHIPPED = ["compiler/grammar/arch.lark", "compiler/conf/__init__.py", "compiler/conf/config.yaml",
           "compiler/conf/search/evolution.yaml", "compiler/conf/hydra/help/automl.yaml",
           "compiler/spaces/digits.arch", "compiler/spaces/nb201.arch", "compiler/backends/templates/model.py.j2",
           "compiler/backends/runtime/measure.py"]


def _site_packages() -> list[str]:
    """This interpreter's package directories (not the checkout, not the standard library)."""
    stdlib = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}
    return [p for p in sys.path if p and Path(p).is_dir() and "site-packages" in Path(p).parts[-1]
            and p not in stdlib and Path(p).resolve() != ROOT]


def _source_copy(dest: Path) -> Path:
    """What the wheel is built from, copied (links kept), so that setuptools' build/ and egg-info folders are made
    there and not in the checkout, whose build/ may hold a user's outputs."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("compiler", "search", "grammar", "conf", "examples"):
        shutil.copytree(ROOT / name, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


# Tests never reach the network: no index, and no check for a newer pip.
OFFLINE = ["--no-index", "--disable-pip-version-check"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv holding only the wheel built from this checkout."""
    base = tmp_path_factory.mktemp("wheel")
    source = _source_copy(base / "source")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", *OFFLINE, "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(base / "dist"), str(source)], cwd=base, capture_output=True, text=True,
                           timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    wheels = list((base / "dist").glob("automl_codegen-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    assert [f for f in SHIPPED if f not in names] == []
    assert not any(n.startswith(("grammar/", "conf/", "examples/", "tests/")) for n in names)  # all inside compiler/

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_reuse_test_interpreter.pth").write_text("\n".join(_site_packages()) + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", *OFFLINE, "--no-deps",
                              "-q", str(wheels[0])], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    return python


def _run(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AUTOML_SHARED_DATA")}
    return subprocess.run([str(python), *args], cwd=cwd, env={**env, "HYDRA_FULL_ERROR": "0"}, capture_output=True,
                          text=True, timeout=600)


def test_wheel_compiles_and_searches_from_any_directory(installed: Path, tmp_path: Path) -> None:
    where = _run(installed, tmp_path, "-c", "import compiler, compiler.resources as r; "
                 "print(compiler.__file__); print(r.checkout_root()); print(r.shared_data())")
    assert where.returncode == 0, where.stderr
    module, root, shared = where.stdout.split("\n")[:3]
    assert Path(module).resolve().is_relative_to(installed.parent.parent.resolve())
    assert root == "None" and shared == "AUTOML_SHARED_DATA-is-not-set"

    # compile a file, with a user's op module found in the working directory
    shutil.copy(EXAMPLES / "custom_ops.py", tmp_path / "my_ops.py")
    (tmp_path / "net.arch").write_text("model net() { input x: [4, 4, 4]\n"
                                       "  output x -> channel_shuffle(2) -> flatten -> linear(3) }\n")
    proc = _run(installed, tmp_path, "-m", "compiler", "arch=net.arch", "ops=[my_ops]", "out_dir=compiled")
    assert proc.returncode == 0, proc.stderr
    written = {p.name for p in (tmp_path / "compiled").iterdir()}
    assert {"model.py", "arch.arch", "summary.json", "profile.py"} <= written
    assert "unflatten(1, (2, -1))" in (tmp_path / "compiled" / "model.py").read_text()
    assert json.loads((tmp_path / "compiled" / "summary.json").read_text())["output_shape"] == [3]

    # a tiny search of the default space (a shipped example space, the shipped configs), scored analytically
    proc = _run(installed, tmp_path, "-m", "compiler", "+search=random", "search.budget=2", "evaluator=cost",
                "objective.objectives=[{name: params, direction: min}]", "out_dir=searched")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "searched"
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    assert (out / "best" / "model.py").is_file() and (out / "pareto.json").is_file()
    config = json.loads((out / "run.json").read_text())
    arch = config["config"]["space"]["arch"]
    assert Path(arch).is_relative_to(installed.parent.parent.resolve()) and arch.endswith("compiler/spaces/digits.arch")

    # data that is not shipped: the error names the variable to set
    proc = _run(installed, tmp_path, "-m", "compiler", "+search=random", "space=nb201", "evaluator=table",
                "out_dir=table")
    assert proc.returncode == 2 and "AUTOML_SHARED_DATA-is-not-set/nb201-cifar10.csv' not found" in proc.stderr
    assert "Traceback" not in proc.stderr
