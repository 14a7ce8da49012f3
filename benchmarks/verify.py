"""How long verifying hand work takes: layer classes (budget 2 s each) and hand derivations.

For every class it times one cold ``verify_layer`` call against a freshly loaded
declaration (nothing memoized: the reference derivative, its mpmath compilation, every
check), over the seed's own classes, the planted-bug and correct classes of
``tests/fixtures/planted_layers.py`` and the generated class of every bundled
elementwise declaration.  Then ``verify-steps`` on every bundled declaration and on
``examples/derivations/``, and the whole ``symbackprop verify-layer`` command in a fresh
process (Python start-up and imports included).

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
from symbackprop import catalog  # noqa: E402
from symbackprop.layercheck import verify_layer  # noqa: E402
from symbackprop.steps import verify  # noqa: E402

BUDGET = 2.0
FIXTURES = ROOT / "tests" / "fixtures"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def classes():
    """(label, class, declaration name) for every class timed."""
    seed, planted = _module("seed_layers"), _module("planted_layers")
    yield from (("seed " + c, getattr(seed, c), s) for c, s in
                (("Sigmoid", "sigmoid"), ("Relu", "relu"), ("MulLayer", "multiply"), ("AddLayer", "add")))
    yield from ((f"planted {n}", getattr(planted, n), s) for n, (s, _) in planted.EXPECTED.items())
    yield from ((f"correct {n}", getattr(planted, n), s) for n, s in planted.CORRECT.items())
    for name in catalog.bundled_names():
        spec = catalog.load(name)
        if not getattr(spec, "is_array", False):
            yield f"generated {name}", spec.compile(), name


def main() -> int:
    print(f"{'layer class':<40} {'findings':<28} {'seconds':>7}")
    times = []
    for label, cls, name in classes():
        start = time.perf_counter()
        report = verify_layer(cls, catalog.load(name))  # a fresh Spec: nothing memoized
        seconds = time.perf_counter() - start
        times.append(seconds)
        found = ", ".join(sorted({f.kind for f in report.findings})) or "-"
        print(f"{label[:40]:<40} {found[:28]:<28} {seconds:>7.3f}")
    print(f"\n{len(times)} classes: median {statistics.median(times):.3f} s, max {max(times):.3f} s "
          f"(budget {BUDGET:g} s)")

    print(f"\n{'verify-steps':<40} {'claims/chains':<28} {'seconds':>7}")
    targets = [n for n in catalog.bundled_names() if not getattr(catalog.load(n), "is_array", False)]
    targets += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples" / "derivations").glob("*.toml"))
    for target in targets:
        start = time.perf_counter()
        report = verify(ROOT / target if target.endswith(".toml") else target)
        seconds = time.perf_counter() - start
        tally = f"{len(report.claims)}/{len(report.chains)} {'ok' if report.ok else 'WRONG'}"
        print(f"{target[:40]:<40} {tally:<28} {seconds:>7.3f}")

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "symbackprop", "verify-layer", f"{FIXTURES / 'seed_layers.py'}:Sigmoid",
                    "--against", "sigmoid"], cwd=ROOT, capture_output=True, check=True)
    print(f"\nsymbackprop verify-layer seed_layers.py:Sigmoid --against sigmoid, fresh process: "
          f"{time.perf_counter() - start:.2f} s")
    return 0 if max(times) < BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
