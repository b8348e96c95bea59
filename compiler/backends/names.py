"""Python identifiers for generated code: every name that reaches source passes through here."""
from __future__ import annotations

import builtins
import hashlib
import keyword
import re

# The public attributes of an nn.Module instance, ``dir(torch.nn.Module())`` (torch 2.14): a layer attribute named
# like one (``self.training``, ``self.to``, ``self.forward``) would break the generated module, so such names get
# a trailing underscore. Written out so that code generation does not import torch; tests/test_names.py checks it
# against the installed torch. Names with a leading underscore never reach generated code (python_name drops it).
NN_MODULE_ATTRIBUTES = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile", "cpu",
    "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state",
    "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers",
    "named_children", "named_modules", "named_parameters", "parameters", "register_backward_hook", "register_buffer",
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad",
})
TEMPLATE_NAMES = frozenset({"self", "torch", "nn", "F", "INPUT_SHAPE", "build_model", "model"})  # model.py.j2's own

_RESERVED = (set(dir(builtins)) | set(keyword.kwlist) | set(keyword.softkwlist) | NN_MODULE_ATTRIBUTES
             | TEMPLATE_NAMES)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_LENGTH = 60


def python_name(name: str, used: set[str]) -> str:
    """A readable, safe, unique identifier for ``name`` (added to ``used``).

    Rejects nothing: anything not a plain ASCII identifier is rewritten, leading underscores are dropped
    (no dunder or private names), reserved words and nn.Module attributes get a trailing underscore, long names
    are shortened with a hash, and clashes are numbered.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name).lstrip("_") or "v"
    if cleaned[0].isdigit():
        cleaned = "v" + cleaned
    if len(cleaned) > MAX_LENGTH:
        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = f"{cleaned[:MAX_LENGTH - 9]}_{digest}"
    if cleaned in _RESERVED:
        cleaned += "_"
    candidate, n = cleaned, 1
    while candidate in used or candidate in _RESERVED:
        n += 1
        candidate = f"{cleaned}_{n}"
    assert _IDENT.match(candidate) and not keyword.iskeyword(candidate)
    used.add(candidate)
    return candidate


def class_name(name: str) -> str:
    camel = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)
    return python_name(camel or "Model", set())
