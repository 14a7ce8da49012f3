"""How derivation time and the backward's work grow with the size of a layer.

For nested chains of 2, 4, 8, 16 and 32 functions (``tanh``, ``sigmoid``, ``softplus``,
``sin`` in turn, written as one expression: ``sin(softplus(sigmoid(tanh(x))))`` is 4) and
for declared graphs of the same functions, one node each, it prints

- the time of one cold derivation (a fresh process: imports and SymPy's caches cold),
- the forward's and the backward's elementwise operations: SymPy's ``count_ops`` of the
  statements after common-subexpression elimination (the forward's graph; the backward's
  recomputed values and its ``d<name> = ...`` statements), and their ratio,
- the arrays ``forward`` keeps, and the time per function.

Goals (issue "every function, any depth"): time per function within 2x from 4 to 32,
32 functions under 5 s, backward/forward operations at most 3 (the cheap-gradient bound of
reverse mode). The script prints the ratios and exits 1 when a goal is missed.

Run: ``python benchmarks/derive_scaling.py``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("tanh", "sigmoid", "softplus", "sin")
SIZES = (2, 4, 8, 16, 32)
SECONDS_AT_32 = 5.0
MAX_OPERATION_RATIO = 3.0
MAX_TIME_SPREAD = 2.0


def declaration(n: int, nested: bool) -> str:
    """A TOML declaration of ``n`` functions, one nested expression or a graph of ``n`` nodes."""
    if nested:
        expr = "x"
        for k in range(n):
            expr = f"{FUNCTIONS[k % 4]}({expr})"
        return f'name = "Nest{n}"\ninputs = ["x"]\nforward = "{expr}"\n'
    lines, previous = [], "x"
    for k in range(n):
        name = "y" if k == n - 1 else f"v{k + 1}"
        lines.append(f'{name} = "{FUNCTIONS[k % 4]}({previous})"')
        previous = name
    return f'name = "Graph{n}"\ninputs = ["x"]\n[graph]\n' + "\n".join(lines) + "\n"


def measure(text: str) -> dict:
    """One cold derivation of ``text`` (run in this process: call through :func:`cold`)."""
    import time  # noqa: PLC0415

    import sympy  # noqa: PLC0415

    from symbackprop.derivation import derive  # noqa: PLC0415
    from symbackprop.spec.toml import spec_from_toml  # noqa: PLC0415

    spec = spec_from_toml(text)
    start = time.perf_counter()
    d = derive(spec)
    seconds = time.perf_counter() - start
    forward = [e for _, e in spec.graph]
    backward = [c.expr for c in d.recompute] + [e for _, e in d.steps]
    return {"seconds": seconds, "forward": operations(forward), "backward": operations(backward),
            "cache": d.cache_names}


def operations(exprs: list) -> int:
    """Elementwise operations of statements after common-subexpression elimination."""
    import sympy  # noqa: PLC0415

    replacements, reduced = sympy.cse(exprs, order="none")
    return sum(sympy.count_ops(e) for _, e in replacements) + sum(sympy.count_ops(e) for e in reduced)


def cold(text: str) -> dict:
    """:func:`measure` in a fresh Python process."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from benchmarks.derive_scaling import measure; "
            "print(json.dumps(measure(sys.stdin.read())))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], input=text, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> int:
    print(f"{'layer':<10} {'functions':>9} {'seconds':>8} {'s/function':>10} {'fwd ops':>8} {'bwd ops':>8} "
          f"{'bwd/fwd':>7}  cache")
    missed = []
    for nested in (True, False):
        per_function = {}
        for n in SIZES:
            r = cold(declaration(n, nested))
            kind = "nested" if nested else "graph"
            ratio = r["backward"] / r["forward"]
            per_function[n] = r["seconds"] / n
            print(f"{kind:<10} {n:>9} {r['seconds']:>8.2f} {per_function[n]:>10.3f} {r['forward']:>8} "
                  f"{r['backward']:>8} {ratio:>7.2f}  {', '.join(r['cache'])}")
            if ratio > MAX_OPERATION_RATIO:
                missed.append(f"{kind} {n}: backward/forward operations {ratio:.2f} > {MAX_OPERATION_RATIO:g}")
            if n == 32 and r["seconds"] >= SECONDS_AT_32:
                missed.append(f"{kind} 32: {r['seconds']:.1f} s >= {SECONDS_AT_32:g} s")
        spread = max(per_function[n] for n in SIZES[1:]) / min(per_function[n] for n in SIZES[1:])
        print(f"{'':<10} time per function, largest/smallest from 4 to 32: {spread:.2f}")
        if spread > MAX_TIME_SPREAD:
            missed.append(f"{kind}: time per function varies {spread:.2f}x from 4 to 32")
    for m in missed:
        print(f"missed: {m}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
