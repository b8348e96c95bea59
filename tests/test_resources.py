"""The files the package ships (compiler/resources.py), the resolvers the configs read them with, and op modules
found from the working directory."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from compiler import resources
from compiler.errors import ArchError
from compiler.ir.ops import load_op_modules
from conftest import ROOT


def test_the_shipped_files_are_the_checkouts() -> None:
    assert resources.grammar_text() == (ROOT / "grammar" / "arch.lark").read_text()
    assert resources.resource("spaces/nb201.arch") == ROOT / "examples" / "spaces" / "nb201.arch"  # in a checkout
    assert resources.resource("conf/config.yaml").read_text() == (ROOT / "conf" / "config.yaml").read_text()
    assert resources.checkout_root() == ROOT


def test_the_configs_come_from_the_package_and_name_shipped_files() -> None:
    with initialize_config_module(config_module=resources.CONFIG_PACKAGE, version_base="1.3"):
        cfg = compose("config", ["+search=random", "space=nb201"])
    assert Path(cfg.space.arch) == resources.resource("spaces/nb201.arch") and Path(cfg.space.arch).is_file()


def test_shared_data_beside_the_checkout_or_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(resources.SHARED_DATA_ENV, raising=False)
    assert resources.shared_data() == str(ROOT.parent / "shared" / "data")
    table = OmegaConf.create({"t": "${shared_data:}/nb201-cifar10.csv"}).t
    assert table == str(ROOT.parent / "shared" / "data" / "nb201-cifar10.csv")
    monkeypatch.setenv(resources.SHARED_DATA_ENV, "/data/here")
    assert resources.shared_data() == "/data/here"
    monkeypatch.setattr(resources, "checkout_root", lambda: None)  # installed, and the variable unset
    monkeypatch.delenv(resources.SHARED_DATA_ENV)
    assert resources.shared_data() == resources.SHARED_DATA_UNSET


def test_op_module_found_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also where the directory is not on sys.path (an entry-point script, a worker started elsewhere)."""
    (tmp_path / "r3_cwd_ops.py").write_text("IMPORTED = True\n")  # a real module would call register_op
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "r3_cwd_ops", raising=False)
    try:
        load_op_modules(["r3_cwd_ops"])
        assert sys.modules["r3_cwd_ops"].IMPORTED and sys.path[-1] == str(tmp_path)
    finally:
        sys.modules.pop("r3_cwd_ops", None)
    with pytest.raises(ArchError, match="cannot import op module 'r3_no_such_ops'"):
        load_op_modules(["r3_no_such_ops"])
