"""The compiler core's lower layers load without the layers above them: the IR, the frontend and the passes
import no torch (lowerings live with the backend) and nothing of a higher layer."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HIGHER = {  # what importing a layer must not load
    "compiler.ir": ("compiler.frontend", "compiler.passes", "compiler.backends", "compiler.api", "compiler.space"),
    "compiler.frontend": ("compiler.passes", "compiler.backends", "compiler.api", "compiler.space"),
    "compiler.passes": ("compiler.backends", "compiler.api", "compiler.space"),
}


def _loaded_after(module: str) -> list[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


@pytest.mark.parametrize("module", sorted(HIGHER))
def test_lower_layers_import_no_torch_and_nothing_above(module: str) -> None:
    loaded = _loaded_after(module)
    assert "torch" not in loaded
    above = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HIGHER[module])]
    assert above == []


def test_the_builtin_ops_have_semantics_without_the_backend_and_lowerings_with_it() -> None:
    code = ("import sys, compiler.ir.ops as ops; spec = ops.REGISTRY['conv']; before = spec.lower is None; "
            "import compiler.backends.pytorch; print(before, ops.REGISTRY['conv'].lower is not None, "
            "'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["True", "True", "True"]


def test_the_package_lists_what_it_exports() -> None:
    import compiler
    assert compiler.__all__ == sorted(compiler._PUBLIC)
    assert all(getattr(compiler, name) is not None for name in compiler.__all__)
