"""Reserved names: a layer named like any nn.Module attribute (`training`, `forward`, `to`, `state_dict`, ...) gets a
mangled attribute in the generated module, and that module imports, runs and behaves like an nn.Module."""
from __future__ import annotations

import ast as pyast
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from compiler import compile_source
from compiler.backends import names
from compiler.backends.names import NN_MODULE_ATTRIBUTES, python_name

MODULE_NAMES = sorted(dir(nn.Module()))


def test_the_reserved_list_covers_every_public_nn_module_attribute() -> None:
    public = {n for n in MODULE_NAMES if not n.startswith("_")}
    assert public <= NN_MODULE_ATTRIBUTES, sorted(public - NN_MODULE_ATTRIBUTES)
    assert "training" in public  # an instance attribute: dir(nn.Module) (the class) does not list it


def test_names_module_does_not_import_torch() -> None:
    tree = pyast.parse(Path(names.__file__).read_text())
    imported = {a.name.split(".")[0] for n in pyast.walk(tree) if isinstance(n, pyast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in pyast.walk(tree) if isinstance(n, pyast.ImportFrom) and n.module}
    assert "torch" not in imported


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_python_name_never_gives_an_nn_module_attribute(name: str) -> None:
    used: set[str] = set()
    mangled = python_name(name, used)
    assert mangled not in MODULE_NAMES and not mangled.startswith("_") and mangled.isidentifier()
    assert python_name(name, set()) == mangled  # deterministic
    assert python_name(name, used) != mangled   # unique


def _import(path: Path) -> object:
    spec = importlib.util.spec_from_file_location("generated_names_model", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_layers_named_like_every_nn_module_attribute_compile_import_and_run(tmp_path: Path) -> None:
    body = []
    previous = "x"
    for name in MODULE_NAMES:
        body.append(f"  {name} = {previous} -> conv(2, 1)")
        previous = name
    text = "model m() {\n  input x: [2, 4, 4]\n" + "\n".join(body) + f"\n  output {previous}\n}}"
    result = compile_source(text, "reserved.arch")
    assigned = [t.attr for n in pyast.walk(pyast.parse(result.source)) if isinstance(n, pyast.Assign)
                for t in n.targets if isinstance(t, pyast.Attribute) and getattr(t.value, "id", "") == "self"]
    assert len(assigned) == len(set(assigned)) == len(MODULE_NAMES)   # one unique attribute per layer
    assert not set(assigned) & set(MODULE_NAMES)
    assert "self.training_ = nn.Conv2d(2, 2, kernel_size=1)" in result.source

    path = tmp_path / "model.py"
    path.write_text(result.source)
    model = _import(path).build_model()                    # what users do: import model.py
    assert isinstance(model, nn.Module) and model.training is True
    out = model(torch.randn(3, 2, 4, 4))
    assert out.shape == (3, 2, 4, 4)
    model.eval()
    assert model.training is False and all(not m.training for m in model.modules())
    model.to("cpu").float()
    state = model.state_dict()
    assert len(state) == 2 * len(MODULE_NAMES)             # weight and bias of every conv
    assert sum(p.numel() for p in model.parameters()) == result.summary["params"]
    copy = _import(path).build_model()
    copy.load_state_dict(state)
    copy.eval()
    x = torch.randn(1, 2, 4, 4)
    assert torch.equal(copy(x), model(x))
