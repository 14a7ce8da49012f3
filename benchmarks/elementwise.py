"""Elementwise layers: symbackprop's generated classes vs hand-written numpy vs naive lambdify.

For sigmoid, tanh, ReLU and exp on a SIZE x SIZE float64 array this measures the wall
time of one ``forward`` + ``backward`` call of three variants:

* generated   -- the class from ``symbackprop.layer(expr).compile()``;
* hand        -- numpy written in the style of "Deep Learning from Scratch", ch. 5 (the book's
                 Sigmoid and Relu, and Tanh and Exp alike, from ``tests/fixtures/``);
* naive       -- ``sympy.lambdify`` of the expression for forward, and backward
                 recomputing ``lambdify(diff(expr, x))`` from the cached input, times dout.

Every timed call is ``layer.forward(x); layer.backward(dout.copy())``: the book's ReLU
writes into ``dout``, so all variants get (and pay for) one fresh copy alike.  A round
runs every (layer, variant) once, in a shuffled order, so drift hits all variants alike;
the reported time is the median over rounds.  Page faults per call are the ru_minflt
difference around a separate batch of calls, divided by its length.  Cache bytes per
element sum ``itemsize`` over the instance attributes that are numpy arrays after
``forward``.  Generated and hand-written outputs and gradients are compared once first.

Run: ``python benchmarks/elementwise.py [--size 1000] [--repeat 100]``.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import sympy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
import symbackprop  # noqa: E402

# The hand-written classes live once, in the test fixtures: the book's own Sigmoid and Relu (ch. 5.5),
# and Tanh and Exp (not in the book) from the correct, book-style classes the checker must never flag.
from tests.fixtures.planted_layers import Exp, Tanh  # noqa: E402
from examples.book_layers import Relu, Sigmoid  # noqa: E402

X = sympy.Symbol("x")
LAYERS = {  # name -> forward expression
    "Sigmoid": 1 / (1 + sympy.exp(-X)),
    "Tanh": sympy.tanh(X),
    "Relu": sympy.Max(X, 0),
    "Exp": sympy.exp(X),
}


HAND = {"Sigmoid": Sigmoid, "Tanh": Tanh, "Relu": Relu, "Exp": Exp}


def naive_class(expr: sympy.Expr) -> type:
    """Forward by lambdify; backward re-evaluates lambdify(diff(expr)) on the cached input."""
    f = sympy.lambdify(X, expr, "numpy")
    df = sympy.lambdify(X, sympy.diff(expr, X), "numpy")

    class Naive:
        def forward(self, x):
            self.x = x
            return f(x)

        def backward(self, dout):
            return dout * df(self.x)

    return Naive


def call(cls: type, x: np.ndarray, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray, object]:
    layer = cls()
    y = layer.forward(x)
    return y, layer.backward(dout.copy()), layer


def cache_bytes(layer: object) -> int:
    return sum(v.itemsize for v in vars(layer).values() if isinstance(v, np.ndarray))


def minor_faults(cls: type, x: np.ndarray, dout: np.ndarray, count: int = 20) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(count):
        call(cls, x, dout)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.size, args.size))
    dout = rng.standard_normal((args.size, args.size))

    variants = {}  # (layer, variant) -> class
    for name, expr in LAYERS.items():
        variants[name, "generated"] = symbackprop.layer(expr, name=name).compile()
        variants[name, "hand"] = HAND[name]
        variants[name, "naive"] = naive_class(expr)
    for name in LAYERS:  # correctness, once
        y_gen, dx_gen, _ = call(variants[name, "generated"], x, dout)
        y_hand, dx_hand, _ = call(variants[name, "hand"], x, dout)
        if not (np.allclose(y_gen, y_hand) and np.allclose(dx_gen, dx_hand)):
            raise AssertionError(f"{name}: generated and hand-written layers disagree")

    times = {key: [] for key in variants}
    order = list(variants)
    for _ in range(args.repeat):
        rng.shuffle(order)
        for key in order:
            start = time.perf_counter()
            call(variants[key], x, dout)
            times[key].append(time.perf_counter() - start)
    ms = {key: 1e3 * statistics.median(t) for key, t in times.items()}
    faults = {key: minor_faults(cls, x, dout) for key, cls in variants.items()}
    cache = {key: cache_bytes(call(cls, x, dout)[2]) for key, cls in variants.items()}

    print(f"numpy {np.__version__}, os.cpu_count() = {os.cpu_count()}, "
          f"{args.size}x{args.size} float64, median of {args.repeat} rounds; "
          "each call is forward + backward(dout.copy()) for every variant alike\n")
    print("| layer | generated (ms) | hand-written (ms) | naive lambdify (ms) | generated / hand "
          "| naive / generated | cache B/elem (gen vs hand) | page faults/call (gen / hand / naive) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    goals = []
    for name in LAYERS:
        g, h, n = (ms[name, v] for v in ("generated", "hand", "naive"))
        cg, ch = cache[name, "generated"], cache[name, "hand"]
        fg, fh, fn = (faults[name, v] for v in ("generated", "hand", "naive"))
        print(f"| {name} | {g:.2f} | {h:.2f} | {n:.2f} | {g / h:.2f} | {n / g:.2f} "
              f"| {cg} vs {ch} | {fg:.0f} / {fh:.0f} / {fn:.0f} |")
        goals.append((f"{name}: generated within 1.1x of hand-written", g / h <= 1.1))
        if name in ("Sigmoid", "Tanh"):
            goals.append((f"{name}: generated at least 2x faster than naive", n / g >= 2.0))
        goals.append((f"{name}: cache memory no more than hand-written", cg <= ch))
    print("\nProject goals (information only):")
    for text, ok in goals:
        print(f"- {'PASS' if ok else 'MISS'}  {text}")


if __name__ == "__main__":
    main()
