"""Dead-code elimination: values that never reach the output are removed, with a located warning."""
from __future__ import annotations

from compiler import compile_source


def test_unused_values_are_removed_with_a_warning() -> None:
    result = compile_source("model m() { input x: [1, 4, 4]\n unused = x -> conv(2, 1)\n output x -> relu }", "d.arch")
    assert [n.name for n in result.graph.nodes] == ["x", "relu1"]
    assert result.warnings == ("d.arch:2:16: warning: the value of 'unused' (conv) is never used; it was removed",)
    assert result.summary["params"] == 0 and "unused" not in result.source
