"""How long verifying hand work takes: layer classes (budget 2 s each) and hand derivations.

For every class it times one cold ``verify_layer`` call against a freshly loaded
declaration (nothing memoized: the reference derivative, its mpmath compilation, for
array layers the derivation and the generated reference class, every check), over the
seed's own classes (the book's Affine, SoftmaxWithLoss and TwoLayerNet among them), the
planted-bug and correct classes of ``tests/fixtures/planted_layers.py``, the explicit loops
of ``examples/naive_layers.py`` (convolution, max pooling) and the generated
class of every bundled declaration, elementwise and array; the summary gives the
elementwise and the array classes (layers and networks) apart.  Then ``verify-steps`` on
every bundled elementwise declaration and on ``examples/derivations/``, and the whole
``symbackprop verify-layer`` command in a fresh process (Python start-up and imports
included), for the seed's Sigmoid and for the book's Affine.

Run: ``python benchmarks/verify.py``.  Exits 1 if a class takes 2 s or more.
"""
from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout
import symbackprop  # noqa: E402
from symbackprop.spec import catalog  # noqa: E402
from symbackprop.checker import verify_layer  # noqa: E402
from symbackprop.verify import verify  # noqa: E402

BUDGET = 2.0
FIXTURES = ROOT / "tests" / "fixtures"


def _module(name: str, folder: Path = FIXTURES):
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def classes():
    """(label, class, declaration name) for every class timed."""
    seed, planted = _module("book_layers", ROOT / "examples"), _module("planted_layers")
    yield from (("seed " + c, getattr(seed, c), s) for c, s in
                (("Sigmoid", "sigmoid"), ("Relu", "relu"), ("MulLayer", "multiply"), ("AddLayer", "add"),
                 ("Affine", "affine"), ("SoftmaxWithLoss", "softmax_with_loss"), ("TwoLayerNet", "two_layer_net")))
    yield from ((f"planted {n}", getattr(planted, n), s) for n, (s, _) in planted.EXPECTED.items())
    yield from ((f"correct {n}", getattr(planted, n), s) for n, s in planted.CORRECT.items())
    naive = _module("naive_layers", ROOT / "examples")  # explicit loops, run at small sizes
    yield from ((f"naive {c}", getattr(naive, c), s) for c, s in
                (("NaiveConvolution", "convolution"), ("NaiveMaxPooling", "max_pooling")))
    for name in catalog.bundled_names():
        yield f"generated {name}", symbackprop.load(name).compile(), name


def main() -> int:
    print(f"{'layer class':<40} {'findings':<28} {'seconds':>7}")
    times: dict[str, list[float]] = {"elementwise": [], "array": []}
    for label, cls, name in classes():
        start = time.perf_counter()
        spec = symbackprop.load(name)  # a fresh Spec: nothing memoized
        report = verify_layer(cls, spec)
        seconds = time.perf_counter() - start
        times["array" if spec.is_array else "elementwise"].append(seconds)
        found = ", ".join(sorted({f.kind for f in report.findings})) or "-"
        print(f"{label[:40]:<40} {found[:28]:<28} {seconds:>7.3f}")
    print()
    for kind, spent in times.items():
        print(f"{len(spent)} {kind} classes: median {statistics.median(spent):.3f} s, max {max(spent):.3f} s "
              f"(budget {BUDGET:g} s)")
    slowest = max(max(spent) for spent in times.values())

    print(f"\n{'verify-steps':<40} {'claims/chains':<28} {'seconds':>7}")
    targets = [n for n in catalog.bundled_names() if not getattr(symbackprop.load(n), "is_array", False)]
    targets += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples" / "derivations").glob("*.toml"))
    for target in targets:
        start = time.perf_counter()
        report = verify(ROOT / target if target.endswith(".toml") else target)
        seconds = time.perf_counter() - start
        tally = f"{len(report.claims)}/{len(report.chains)} {'ok' if report.ok else 'WRONG'}"
        print(f"{target[:40]:<40} {tally:<28} {seconds:>7.3f}")

    print()
    for cls, spec in (("Sigmoid", "sigmoid"), ("Affine", "affine")):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "symbackprop", "verify-layer", f"{ROOT / 'examples' / 'book_layers.py'}:{cls}",
                        "--against", spec], cwd=ROOT, capture_output=True, check=True)
        print(f"symbackprop verify-layer examples/book_layers.py:{cls} --against {spec}, fresh process: "
              f"{time.perf_counter() - start:.2f} s")
    return 0 if slowest < BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
