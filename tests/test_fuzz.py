"""Fuzzing the compiler with seeded mutations of the example files: every outcome is a result or a located ArchError.

Each case takes one example (examples/*.arch, examples/spaces/*.arch) and applies one to three mutations at the
token level (delete, duplicate, swap, numbers made huge/negative/zero/fractional, random characters, truncation,
nesting, a name replaced by a reserved one), then compiles it (`compile_source`; spaces through `load_space` and
one concrete architecture). Nothing but ArchError may escape, every ArchError points into the file (line >= 1),
and no case may run longer than a few seconds (a timer interrupts it). The default suite runs a few hundred
cases; the slow one 1,500 with other seeds, from `FUZZ_SEED` (default 10,000: a nightly job can pass a new one,
e.g. `FUZZ_SEED=$RANDOM$RANDOM python -m pytest -m slow tests/test_fuzz.py`; a failure names its seed).
"""
from __future__ import annotations

import os
import random
import re
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from compiler import ArchError, compile_source
from compiler.space import load_space

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted((ROOT / "examples").glob("*.arch"))
SPACES = sorted((ROOT / "examples" / "spaces").glob("*.arch"))
CASE_SECONDS = 10  # far above any limit-bounded compile of these small files; a case over it is a hang

_TOKEN = re.compile(r"\s+|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|\d+\.\d*(?:[eE][-+]?\d+)?|\d+|->|\*\*|//|[=!<>]=|.", re.S)
NUMBERS = ["0", "-1", "1000000000", "99999999999999999999999", "1e999", "0.5", "3.7", "-0.0", "10 ** 40",
           "(0 - 8) ** 0.5", "2 ** 62", "1 / 0", "true", "100000 * 100000"]
NAMES = ["training", "forward", "to", "self", "__class__", "x", "input", "output", "relu", "conv", "model", "range",
         "stage1", "add", "int", "select", "x1"]
GARBAGE = ["{", "}", "(", ")", "[", "]", "|", ",", "->", "*", "=", ":", "\"", "'", "\x00", "\ufeff", "é", "\t",
           "\n", "#", ";", "@", "\\", "as", "if", "for", "let", "else", "block", "\u2028", "\x0c"]


# How often each kind of mutation below is picked: those that keep the syntax valid more often, so that most
# cases reach the later stages (expansion, evaluation, shapes, code generation), not only the parser.
KIND_WEIGHTS = [1, 1, 1, 4, 1, 0.5, 2, 1, 3, 2]


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _significant(toks: list[str]) -> list[int]:
    return [i for i, t in enumerate(toks) if t.strip() and not t.startswith("#")]


def mutate(text: str, rng: random.Random) -> str:
    toks = tokens(text)
    if not toks:  # truncated to nothing before
        return rng.choice(GARBAGE + ["model m() {}", "model"])
    where = _significant(toks) or [0]
    i = rng.choice(where)
    kind = rng.choices(range(10), weights=KIND_WEIGHTS)[0]
    if kind == 0:                                   # delete a token
        del toks[i]
    elif kind == 1:                                 # duplicate a token
        toks.insert(i, toks[i])
    elif kind == 2:                                 # swap two tokens
        j = rng.choice(where)
        toks[i], toks[j] = toks[j], toks[i]
    elif kind == 3:                                 # a number made huge, negative, zero, fractional, ...
        numbers = [k for k in where if toks[k][0].isdigit()] or [i]
        toks[rng.choice(numbers)] = rng.choice(NUMBERS)
    elif kind == 4:                                 # random characters
        toks.insert(i, "".join(rng.choice(GARBAGE) for _ in range(rng.randint(1, 3))))
    elif kind == 5:                                 # truncated
        toks = toks[: rng.randrange(len(toks) + 1)]
    elif kind == 6:                                 # an expression nested
        numbers = [k for k in where if toks[k][0].isdigit()] or [i]
        k, depth = rng.choice(numbers), rng.choice([1, 5, 60, 200])
        toks[k] = "(" * depth + toks[k] + " + 0)" * depth
    elif kind == 7:                                 # statements nested in if/for bodies
        lines = "".join(toks).split("\n")
        a = rng.randrange(len(lines))
        b = min(len(lines), a + rng.randint(1, 4))
        wrap = rng.choice(["if true {", "for i9 in range(2) {", "if 1 < 2 {", "for q in range(3, 1) {"])
        depth = rng.choice([1, 3, 120])
        lines[a:b] = [wrap * depth, *lines[a:b], "}" * depth]
        return "\n".join(lines)
    elif kind == 8:                                 # a name replaced (reserved words, nn.Module attributes, ...)
        names = [k for k in where if toks[k][0].isalpha() or toks[k][0] == "_"] or [i]
        toks[rng.choice(names)] = rng.choice(NAMES)
    else:                                           # a layer repeated, or a line duplicated
        arrows = [k for k in where if toks[k] == "->"]
        if arrows and rng.random() < 0.5:
            k = rng.choice(arrows)
            end = next((m for m in range(k + 1, len(toks)) if toks[m] in ("->", "\n") or "\n" in toks[m]), len(toks))
            toks.insert(end, f" * {rng.choice(['0', '2', '100000', '-1', '[1 | 2]', 'true'])}")
        else:
            lines = "".join(toks).split("\n")
            a = rng.randrange(len(lines))
            lines.insert(a, lines[a] * rng.choice([1, 2]))
            return "\n".join(lines)
    return "".join(toks)


class Hang(Exception):
    pass


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    def fire(signum, frame):  # noqa: ANN001
        raise Hang(f"no result after {seconds} s")
    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def compile_space(text: str, filename: str) -> None:
    space = load_space(text, filename)
    if space.decisions:
        space.compile(space.random_genotype(np.random.default_rng(len(text))))
    else:
        space.compile(())


def case(seed: int) -> tuple[str, str, Callable[[str, str], object]]:
    """The mutated text of case ``seed``, the example it came from, and how it is compiled."""
    rng = random.Random(seed)
    is_space = rng.random() < 0.3
    path = rng.choice(SPACES if is_space else MODELS)
    text = path.read_text()
    for _ in range(rng.choice([1, 1, 2, 3])):
        text = mutate(text, rng)
    return text, path.name, compile_space if is_space else compile_source


def check(seed: int) -> str:
    """Run one case; return what happened ('ok' or 'error'), fail the test on anything else."""
    text, origin, compile_fn = case(seed)
    try:
        with time_bound(CASE_SECONDS):
            compile_fn(text, "fuzz.arch")
    except ArchError as err:
        span = err.span
        assert span is not None and span.file == "fuzz.arch" and span.line >= 1, \
            f"seed {seed} ({origin}): an error without a location in the file: {err}\n--- source:\n{text}"
        assert str(err).startswith(f"fuzz.arch:{span.line}:{span.column}: error: "), str(err)
        return "error"
    except Exception as err:  # noqa: BLE001  (the point of the test: nothing else may escape)
        raise AssertionError(f"seed {seed} ({origin}): {type(err).__name__}: {err}\n--- source:\n{text}") from err
    return "ok"


def test_mutations_change_the_text_and_are_reproducible() -> None:
    assert case(7)[0] == case(7)[0]
    originals = {p.name: p.read_text() for p in MODELS + SPACES}
    changed = sum(text != originals[origin] for text, origin, _ in map(case, range(50)))
    assert changed >= 45


def test_fuzz_examples_default() -> None:
    outcomes = [check(seed) for seed in range(400)]
    # Both outcomes occur: the mutations are neither all harmless nor all fatal.
    assert outcomes.count("ok") >= 40 and outcomes.count("error") >= 200, \
        (outcomes.count("ok"), outcomes.count("error"))


@pytest.mark.slow
def test_fuzz_examples_more_seeds() -> None:
    first = int(os.environ.get("FUZZ_SEED", "10000"))
    for seed in range(first, first + 1_500):
        check(seed)
