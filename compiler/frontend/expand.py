"""AST -> IR: evaluate parameters, instantiate blocks, unroll loops and conditionals into one flat Graph.

The dataflow is in SSA form: reassigning a name (``x = x -> relu``) makes a new value, and every layer becomes
one uniquely named Node. Names are chosen for people reading the generated code: a one-layer flow assigned to a
fresh name takes that name (``stem = x -> conv(...)`` -> ``stem``); a longer one prefixes its layers with it
(``stem_conv1``, ``stem_bn1``); other layers are numbered per kind (``conv1``, ``conv2``), and layers inside a
block instance are prefixed with the instance (``basic3_conv1``).

Supernet mode (for DARTS): given a ``relax`` callback, a layer choice it relaxes expands *every* option and joins
their outputs in one ``mixed`` node, and a relaxed input choice joins its candidate values in one; each node made
inside an option records the (decision, option) pairs it depends on in ``meta["guard"]``. The nodes whose guard a
genotype satisfies, in order, are exactly the nodes ``concretize(genotype)`` makes (mixed nodes aside), which is
how supernet weights map onto a derived network.

The size limits (``compiler/limits.py``) are checked as the expansion goes: a loop's trip count and a repeat
count before the first iteration, the number of layers and of statements run at every step, so a file that would
expand to billions of layers is refused at the first layer over the limit.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from compiler.errors import ArchError, Span
from compiler.frontend import ast
from compiler.frontend.evaluate import Chooser, Evaluator, Value, choose
from compiler.frontend.sites import instance_namespace, option_call
from compiler.ir.graph import MAIN_OUTPUT, Graph, Node, frozen
from compiler.ir.ops import REGISTRY, ArgError, OpRegistry
from compiler.limits import DEFAULT_LIMITS, Limits, limit_error


class Relaxer(Protocol):
    """Supernet mode: the index of the relaxed decision a choice site belongs to, or None to take one option."""

    def __call__(self, choice: ast.Choice, context: str) -> int | None: ...


Guard = tuple[tuple[int, int], ...]  # (relaxed decision, option) pairs a supernet node exists under


class _Names:
    """Unique node names across the graph."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.counters: dict[str, int] = {}

    def exact(self, name: str) -> str | None:
        if name in self.used:
            return None
        self.used.add(name)
        return name

    def numbered(self, base: str) -> str:
        n = self.counters.get(base, 0)
        sep = "_" if base[-1:].isdigit() else ""  # nor_conv_1x1 -> nor_conv_1x1_1, not nor_conv_1x11
        while True:
            n += 1
            name = f"{base}{sep}{n}"
            if name not in self.used:
                self.counters[base] = n
                self.used.add(name)
                return name


@dataclass
class _Scope:
    prefix: str                               # "" for the model, "basic3_" inside a block instance
    consts: dict[str, Value]                  # parameters, lets, loop variables
    values: dict[str, str] = field(default_factory=dict)   # value name -> node name (SSA)
    later: set[str] = field(default_factory=set)           # names assigned somewhere in this body
    stack: tuple[tuple[str, Span], ...] = ()  # block instantiations leading here (for messages)
    namespace: str = ""                       # decision namespace: "" or "label." from `block(...) as label`
    output: str | None = None
    inputs: Sequence[str] = ()                # for blocks: the incoming node names
    is_model: bool = False
    evaluator: Evaluator | None = None        # made on first use (see Expander.evaluator)


def _assigned_names(body: Sequence[ast.Stmt]) -> set[str]:
    names: set[str] = set()
    for s in body:
        if isinstance(s, ast.AssignStmt):
            names.add(s.target)
        elif isinstance(s, ast.ForStmt):
            names |= _assigned_names(s.body)
        elif isinstance(s, ast.IfStmt):
            names |= _assigned_names(s.then) | _assigned_names(s.otherwise)
    return names


class Expander:
    def __init__(self, module: ast.Module, *, source: str | None = None, registry: OpRegistry = REGISTRY,
                 chooser: Chooser | None = None, relax: Relaxer | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        self.module = module
        self.source = source
        self.registry = registry
        self.chooser = chooser
        self.relax = relax
        self.limits = limits
        self.steps = 0                       # statements run and block instances made (limits.max_steps)
        self.guard: Guard = ()               # the relaxed options being expanded (supernet mode)
        self.blocks = {d.name: d for d in module.definitions if d.kind == "block"}
        self.names = _Names()
        self.nodes: list[Node] = []
        self.aux_outputs: dict[str, tuple[str, Span]] = {}  # auxiliary output name -> (node, statement span)

    # ---- helpers -------------------------------------------------------------------------------
    def error(self, message: str, where: ast.Node | Span, hint: str | None = None,
              stack: Sequence[tuple[str, Span]] = ()) -> ArchError:
        span = where if isinstance(where, Span) else where.span
        if stack:
            chain = ", ".join(f"'{name}' used at {s}" for name, s in reversed(stack))
            hint = f"{hint + '; ' if hint else ''}inside block {chain}"
        return ArchError(message, span, self.source, hint)

    def limit_error(self, name: str, message: str, where: ast.Node | Span, stack: Sequence[tuple[str, Span]] = (),
                    needed: int | None = None) -> ArchError:
        err = limit_error(self.limits, name, message, where if isinstance(where, Span) else where.span, self.source,
                          needed)
        return self.error(err.message, err.span, err.hint, stack)

    def _step(self, where: ast.Node, scope: _Scope) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise self.limit_error("max_steps", f"the expansion runs more than {self.limits.max_steps:,} statements "
                                   "and block instances (loops count once per iteration)", where, scope.stack)

    def _add_node(self, node: Node, where: ast.Node | Span, scope: _Scope) -> None:
        if len(self.nodes) >= self.limits.max_layers:
            raise self.limit_error("max_layers", f"the model expands to more than {self.limits.max_layers:,} layers; "
                                   "blocks, loops and repeats multiply", where, scope.stack)
        self.nodes.append(node)

    def evaluator(self, scope: _Scope) -> Evaluator:
        """One per scope: it reads the scope's dicts, which later statements update in place."""
        if scope.evaluator is None:
            scope.evaluator = Evaluator(scope.consts, values=scope.values, chooser=self.chooser,
                                        context=scope.namespace, source=self.source, limits=self.limits)
        return scope.evaluator

    def _bind(self, what: str, params: Sequence[ast.Param], call: ast.Call, scope: _Scope,
              outer: Evaluator, namespace: str = "") -> dict[str, Value]:
        """Bind a block's or model's arguments (defaults may use earlier parameters)."""
        names = [p.name for p in params]
        given: dict[str, Value] = {}
        positional = [a for a in call.args if a.name is None]
        if len(positional) > len(params):
            raise self.error(f"{what} takes at most {len(params)} argument(s) ({', '.join(names)}), "
                             f"got {len(positional)}", call, stack=scope.stack)
        for p, a in zip(params, positional):
            given[p.name] = outer(a.value)
        for a in call.args:
            if a.name is None:
                continue
            if a.name not in names:
                hint = difflib.get_close_matches(a.name, names, n=1)
                raise self.error(f"{what} has no parameter '{a.name}'", a,
                                 f"did you mean '{hint[0]}'?" if hint else f"parameters: {', '.join(names) or 'none'}",
                                 stack=scope.stack)
            if a.name in given:
                raise self.error(f"parameter '{a.name}' of {what} is given twice", a, stack=scope.stack)
            given[a.name] = outer(a.value)
        return self._fill_defaults(what, params, given, call.span, scope.stack, namespace)

    def _fill_defaults(self, what: str, params: Sequence[ast.Param], given: Mapping[str, Value], at: Span,
                       stack: Sequence[tuple[str, Span]] = (), namespace: str = "") -> dict[str, Value]:
        bound: dict[str, Value] = {}
        for p in params:
            if p.name in given:
                bound[p.name] = given[p.name]
            elif p.default is not None:
                bound[p.name] = Evaluator(bound, chooser=self.chooser, context=namespace, source=self.source,
                                          limits=self.limits)(p.default)
            else:
                raise self.error(f"{what} needs a value for parameter '{p.name}'", at, stack=stack)
        return bound

    # ---- entry ---------------------------------------------------------------------------------
    def expand_model(self, overrides: Mapping[str, Any] | None = None,
                     input_shape: Sequence[int] | None = None) -> Graph:
        models = [d for d in self.module.definitions if d.kind == "model"]
        model = models[0]
        overrides = dict(overrides or {})
        names = [p.name for p in model.params]
        for key in overrides:
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                raise self.error(f"model '{model.name}' has no parameter '{key}'", model,
                                 f"did you mean '{hint[0]}'?" if hint
                                 else f"its parameters: {', '.join(names) or 'none'}")
            overrides[key] = self._override(key, overrides[key])
        params = self._fill_defaults(f"model '{model.name}'", model.params, overrides, model.span)
        scope = _Scope("", dict(params), later=_assigned_names(model.body), is_model=True)
        self._input_shape = tuple(input_shape) if input_shape is not None else None
        self.run_body(model.body, scope)
        if scope.output is None:
            raise self.error(f"model '{model.name}' has no 'output' statement", model,
                             "end the body with e.g. `output x -> linear(10)`")
        return Graph(model.name, tuple(self.nodes), scope.output, frozen(params), model.span,
                     aux_outputs=tuple((name, node) for name, (node, _) in self.aux_outputs.items()))

    def _override(self, key: str, value: Any) -> Value:
        """A model parameter given from outside (``+params.NAME=VALUE``, keyword arguments): a number or a
        boolean, as the .arch text could write it; located at the config key."""
        where = Span(f"params.{key}", 0, 0)
        if isinstance(value, bool) or (isinstance(value, float) and math.isfinite(value)):
            return value
        if isinstance(value, int):
            if value.bit_length() > self.limits.max_int_bits:
                raise self.limit_error("max_int_bits", f"parameter '{key}' is too large ({value.bit_length():,} bits)",
                                       where)
            return value
        if isinstance(value, float):
            raise self.error(f"parameter '{key}' must be a finite number, got {value}", where)
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise self.error(f"parameter '{key}' must be a number or true/false, got {type(value).__name__} {shown}",
                         where, f"give a number, e.g. +params.{key}=16" if isinstance(value, str) else None)

    # ---- statements ----------------------------------------------------------------------------
    def run_body(self, body: Sequence[ast.Stmt], scope: _Scope) -> None:
        for stmt in body:
            if scope.output is not None:
                raise self.error("statement after 'output'", stmt, "'output' must be the last statement",
                                 stack=scope.stack)
            self._step(stmt, scope)
            getattr(self, "_" + type(stmt).__name__)(stmt, scope)

    def _InputStmt(self, s: ast.InputStmt, scope: _Scope) -> None:
        for name in s.names:
            self._check_new_value(name, s, scope)
        if not scope.is_model:
            if s.shape is not None:
                raise self.error("block inputs take their shapes from where the block is used; remove the shape",
                                 s, stack=scope.stack)
            if scope.values or len(s.names) != len(scope.inputs):
                raise self.error(f"the block receives {len(scope.inputs)} input(s) but declares "
                                 f"{len(scope.values) + len(s.names)}", s, stack=scope.stack)
            scope.values.update(zip(s.names, scope.inputs))
            return
        if s.shape is None:
            raise self.error("a model input needs a shape, e.g. `input x: [3, 32, 32]` (batch is implied)", s)
        ev = self.evaluator(scope)
        shape = tuple(ev(d) for d in s.shape)
        if self._input_shape is not None and not any(n.op == "input" for n in self.nodes):
            shape = self._input_shape
        for d, value in zip(s.shape, shape):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise self.error(f"input dimensions must be positive integers, got {value!r}", d)
        for name in s.names:
            node_name = self.names.exact(name)
            if node_name is None:
                raise self.error(f"duplicate name '{name}'", s)
            self._add_node(Node(node_name, "input", (), frozen({"shape": shape}), s.span, frozen({"stack": ()})),
                           s, scope)
            scope.values[name] = node_name

    def _check_new_value(self, name: str, stmt: ast.Node, scope: _Scope) -> None:
        if name in scope.consts:
            raise self.error(f"'{name}' is already a parameter; choose another name for this value", stmt,
                             stack=scope.stack)
        is_op = name in self.registry and not self.registry[name].internal  # .arch text cannot name internal ops
        if name in self.blocks or is_op:
            raise self.error(f"'{name}' names an {'op' if is_op else 'block'}; choose another "
                             f"name for this value", stmt, stack=scope.stack)

    def _LetStmt(self, s: ast.LetStmt, scope: _Scope) -> None:
        if s.target in scope.values or s.target in scope.later:
            raise self.error(f"'{s.target}' is a tensor value; a `let` needs another name", s, stack=scope.stack)
        scope.consts[s.target] = self.evaluator(scope)(s.value)

    def _AssignStmt(self, s: ast.AssignStmt, scope: _Scope) -> None:
        self._check_new_value(s.target, s, scope)
        fresh = s.target not in scope.values and (scope.prefix + s.target) not in self.names.used
        scope.values[s.target] = self.run_flow(s.flow, scope, s.target if fresh else None)

    def _OutputStmt(self, s: ast.OutputStmt, scope: _Scope) -> None:
        if s.name is None:
            scope.output = self.run_flow(s.flow, scope, None)
            return
        # `output NAME = flow`: an auxiliary output of the model (training only); it does not end the body
        if not scope.is_model:
            raise self.error(f"an auxiliary output ('output {s.name} = ...') belongs to the model, not to a block",
                             s, "return the value from the block and declare the output in the model",
                             stack=scope.stack)
        if s.name == MAIN_OUTPUT:
            raise self.error(f"'{MAIN_OUTPUT}' names the model's main output; choose another name", s)
        if s.name in self.aux_outputs:
            raise self.error(f"auxiliary output '{s.name}' is declared twice (first at {self.aux_outputs[s.name][1]})",
                             s, "a loop declares it once per pass: put it under an `if`, or give each its own name")
        fresh = s.name not in self.names.used
        self.aux_outputs[s.name] = (self.run_flow(s.flow, scope, s.name if fresh else None), s.span)

    def _ForStmt(self, s: ast.ForStmt, scope: _Scope) -> None:
        ev = self.evaluator(scope)
        bounds = [ev(s.start)] + ([ev(s.stop)] if s.stop is not None else [])
        for b, e in zip(bounds, (s.start, s.stop)):
            if isinstance(b, bool) or not isinstance(b, int):
                raise self.error(f"range() needs integers, got {b!r}", e, stack=scope.stack)  # type: ignore[arg-type]
        if s.var in scope.consts or s.var in scope.values:
            raise self.error(f"loop variable '{s.var}' hides an existing name", s, stack=scope.stack)
        trips = max(0, bounds[-1] - (bounds[0] if len(bounds) == 2 else 0))  # len(range()) overflows past 2**63
        if trips > self.limits.max_loop_trips:
            raise self.limit_error("max_loop_trips", f"the loop runs {trips:,} times", s.stop or s.start,
                                   scope.stack, trips)
        for i in range(*bounds):
            scope.consts[s.var] = i
            self.run_body(s.body, scope)
        scope.consts.pop(s.var, None)

    def _IfStmt(self, s: ast.IfStmt, scope: _Scope) -> None:
        cond = self.evaluator(scope)(s.condition)
        if not isinstance(cond, bool):
            raise self.error(f"an 'if' condition must be true or false, got {cond!r}", s.condition,
                             stack=scope.stack)
        self.run_body(s.then if cond else s.otherwise, scope)

    # ---- flows ---------------------------------------------------------------------------------
    def run_flow(self, flow: ast.Flow, scope: _Scope, target: str | None) -> str:
        if isinstance(flow.sources, str):
            current = [self._lookup(flow.sources, flow, scope)]
        elif isinstance(flow.sources, ast.Choice):
            choice = flow.sources
            relaxed = self.relax(choice, scope.namespace) if self.relax is not None else None
            picked = choice.options if relaxed is not None else \
                (choice.options[choose(self.chooser, choice, scope.namespace, self.source)],)
            for option in picked:
                if not isinstance(option, ast.Name):
                    raise self.error("an input choice offers values by name, e.g. [n0 | n1]", option,
                                     stack=scope.stack)
            values = [self._lookup(o.id, o, scope) for o in picked]  # type: ignore[union-attr]
            current = values if relaxed is None else [self._mix(relaxed, values, choice, scope, None)]
        else:
            current = [self.run_flow(f, scope, None) for f in flow.sources]
        for layer in flow.layers:
            repeat = 1
            if layer.repeat is not None:
                repeat = self.evaluator(scope)(layer.repeat)  # type: ignore[assignment]
                if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 0:
                    raise self.error(f"a repeat count must be a non-negative integer, got {repeat!r}", layer.repeat,
                                     stack=scope.stack)
                if repeat > self.limits.max_repeat:
                    raise self.limit_error("max_repeat", f"the layer is repeated {repeat:,} times", layer.repeat,
                                           scope.stack, repeat)
            naming = None
            if target is not None:
                naming = target if len(flow.layers) == 1 and layer.repeat is None else target + "_"
            for _ in range(repeat):
                current = [self.apply(layer.target, current, scope, naming, layer.label)]
        if len(current) != 1:
            raise self.error(f"{len(current)} values are grouped here but never merged", flow,
                             "send a tuple into a merging op, e.g. `(a, b) -> add`", stack=scope.stack)
        return current[0]

    def _lookup(self, name: str, where: ast.Node, scope: _Scope) -> str:
        if name in scope.values:
            return scope.values[name]
        if name in scope.later:
            raise self.error(f"'{name}' is used before it is defined", where,
                             "a value cannot depend on itself (that would be a cycle); define it first",
                             stack=scope.stack)
        if name in scope.consts:
            raise self.error(f"'{name}' is a parameter, not a tensor value; a flow starts from a value", where,
                             stack=scope.stack)
        hint = difflib.get_close_matches(name, list(scope.values), n=1)
        raise self.error(f"undefined value '{name}'", where, f"did you mean '{hint[0]}'?" if hint else None,
                         stack=scope.stack)

    def apply(self, target: ast.Call | ast.Choice, inputs: list[str], scope: _Scope, naming: str | None,
              label: str | None = None) -> str:
        if isinstance(target, ast.Choice):
            relaxed = self.relax(target, scope.namespace) if self.relax is not None else None
            if relaxed is not None:
                return self._relaxed_layer(target, relaxed, inputs, scope, naming, label)
            target = self._option_call(target.options[choose(self.chooser, target, scope.namespace, self.source)],
                                       scope)
        if target.func in self.blocks:
            namespace = instance_namespace(scope.namespace, label)
            return self._instantiate(self.blocks[target.func], target, inputs, scope, naming, namespace)
        if label is not None:
            raise self.error(f"'as {label}' names the choices inside a block instance, but '{target.func}' is an op",
                             target, stack=scope.stack)
        spec = self.registry.get(target.func)
        if spec is None or spec.internal:
            raise self.error(f"unknown op or block '{target.func}'", target,
                             self.registry.unknown_hint(target.func, self.blocks), stack=scope.stack)
        ev = self.evaluator(scope)
        try:
            attrs = spec.bind([ev(a.value) for a in target.args if a.name is None],
                              {a.name: ev(a.value) for a in target.args if a.name is not None})
        except ArgError as err:
            raise self.error(str(err), target, stack=scope.stack) from None
        if len(inputs) > self.limits.max_inputs:
            raise self.limit_error("max_inputs", f"'{spec.name}' merges {len(inputs):,} values", target, scope.stack,
                                   len(inputs))
        if spec.num_inputs is None and len(inputs) < 2:
            raise self.error(f"'{spec.name}' merges two or more values, got {len(inputs)}", target,
                             f"write e.g. `(a, b) -> {spec.name}`", stack=scope.stack)
        if spec.num_inputs is not None and len(inputs) != spec.num_inputs:
            raise self.error(f"'{spec.name}' takes {spec.num_inputs} input(s), got {len(inputs)}", target,
                             "merge a tuple first, e.g. `(a, b) -> add -> relu`", stack=scope.stack)
        name = self._node_name(scope.prefix, spec.name, naming)
        self._add_node(Node(name, spec.name, tuple(inputs), frozen(attrs), target.span, self._meta(scope)), target,
                       scope)
        return name

    def _meta(self, scope: _Scope) -> Mapping[str, Any]:
        return frozen({"stack": scope.stack, "guard": self.guard} if self.guard else {"stack": scope.stack})

    def _option_call(self, option: ast.Expr, scope: _Scope) -> ast.Call:
        call = option_call(option)
        if call is None:
            raise self.error("an option of a layer choice must be an op or block, e.g. [conv(16, 3) | identity]",
                             option, stack=scope.stack)
        return call

    def _relaxed_layer(self, choice: ast.Choice, decision: int, inputs: list[str], scope: _Scope,
                       naming: str | None, label: str | None) -> str:
        """Supernet mode: every option applied to the same inputs, then mixed."""
        outputs = []
        outer = self.guard
        for k, option in enumerate(choice.options):
            self.guard = outer + ((decision, k),)
            try:
                outputs.append(self.apply(self._option_call(option, scope), list(inputs), scope, None, label))
            finally:
                self.guard = outer
        return self._mix(decision, outputs, choice, scope, naming)

    def _mix(self, decision: int, values: list[str], choice: ast.Choice, scope: _Scope, naming: str | None) -> str:
        spec = self.registry["mixed"]
        if len(values) > self.limits.max_inputs:
            raise self.limit_error("max_inputs", f"the supernet mixes {len(values):,} options here", choice,
                                   scope.stack, len(values))
        name = self._node_name(scope.prefix, spec.name, naming)
        self._add_node(Node(name, spec.name, tuple(values), frozen(spec.bind([decision], {})), choice.span,
                            self._meta(scope)), choice, scope)
        return name

    def _node_name(self, prefix: str, kind: str, naming: str | None) -> str:
        if naming is not None and not naming.endswith("_"):
            exact = self.names.exact(prefix + naming)
            if exact is not None:
                return exact
        return self.names.numbered(prefix + (naming or "") + kind)

    def _instantiate(self, block: ast.Definition, call: ast.Call, inputs: list[str], scope: _Scope,
                     naming: str | None, namespace: str) -> str:
        if any(name == block.name for name, _ in scope.stack):
            path = " -> ".join([n for n, _ in scope.stack] + [block.name])
            raise self.error(f"block '{block.name}' instantiates itself ({path})", call,
                             "blocks cannot be recursive", stack=scope.stack)
        self._step(call, scope)
        params = self._bind(f"block '{block.name}'", block.params, call, scope, self.evaluator(scope), namespace)
        # A block instance takes the value's name only when it is the whole flow; in a longer chain it is
        # numbered (stage1, stage2), which keeps the names of the layers inside it short.
        label = self._node_name(scope.prefix, block.name, naming if naming and not naming.endswith("_") else None)
        inner = _Scope(label + "_", params, later=_assigned_names(block.body),
                       stack=scope.stack + ((block.name, call.span),), inputs=inputs, namespace=namespace)
        self.run_body(block.body, inner)
        if len(inputs) and not inner.values and not any(isinstance(s, ast.InputStmt) for s in block.body):
            raise self.error(f"block '{block.name}' declares no input", block, "start its body with `input x`")
        if inner.output is None:
            raise self.error(f"block '{block.name}' has no 'output' statement", block,
                             "end the body with e.g. `output y`")
        return inner.output
