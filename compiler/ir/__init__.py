"""The IR: graph and nodes, the op registry and the built-in ops' semantics, the search Space. No torch here."""
from compiler.ir import builtin_ops  # noqa: F401  (the built-in ops are registered wherever the IR is used)
