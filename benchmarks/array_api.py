"""The array-API backend's class against the numpy backend's, on numpy arrays (what the
array-API class costs a numpy user), and on array_api_strict arrays and torch tensors.

For each layer, forward + backward time (best of ``repeat`` in each of ``rounds``
interleaved rounds, the median of the rounds' bests) at 1000x1000 and at 10x10 (where
the per-call cost of ``array_namespace`` and array-api-compat's wrappers shows), float64,
CPU.  Ratios are of one run, to the numpy class.

    python -m benchmarks.array_api [--repeat 20] [--rounds 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import symbackprop

LAYERS = ["sigmoid", "swish", "gelu", "relu", "softmax_with_loss", "layer_norm", "affine"]


def _arguments(name: str, size: int, rng) -> tuple[list, list, np.ndarray]:
    """(params, forward arguments, dout) as numpy arrays."""
    x = rng.standard_normal((size, size))
    if name == "softmax_with_loss":
        return [], [x, np.eye(size)[rng.integers(0, size, size)]], np.float64(1.0)
    if name == "layer_norm":
        return [1 + 0.1 * rng.standard_normal(size), rng.standard_normal(size)], [x], rng.standard_normal((size, size))
    if name == "affine":
        return [rng.standard_normal((size, size)), rng.standard_normal(size)], [x], rng.standard_normal((size, size))
    return [], [x], rng.standard_normal((size, size))


def _step(cls, params, args, dout, convert):
    layer = cls(*map(convert, params))
    args = [convert(a) for a in args]
    dout = convert(dout)

    def run():
        layer.forward(*args)
        layer.backward(dout)
    return run


def _columns(name: str, size: int, rng) -> dict:
    params, args, dout = _arguments(name, size, rng)
    spec = symbackprop.load(name)
    numpy_cls, api_cls = symbackprop.compile(spec), symbackprop.compile(spec, backend="array-api")
    columns = {"numpy class": _step(numpy_cls, params, args, dout, lambda a: a),
               "array-api on numpy": _step(api_cls, params, args, dout, lambda a: a)}
    try:
        import array_api_strict
        columns["array-api on strict"] = _step(api_cls, params, args, dout, array_api_strict.asarray)
    except ImportError:
        pass
    try:
        import torch
        columns["array-api on torch"] = _step(api_cls, params, args, dout, torch.asarray)
    except ImportError:
        pass
    return columns


def _timed(columns: dict, repeat: int, rounds: int) -> dict[str, float]:
    for run in columns.values():
        run()
    bests: dict[str, list[float]] = {k: [] for k in columns}
    for _ in range(rounds):
        for key, run in columns.items():
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - start)
            bests[key].append(best)
    return {k: statistics.median(v) for k, v in bests.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch's threads (default: torch's own)")
    parser.add_argument("--layers", nargs="*", default=LAYERS)
    args = parser.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    header = None
    for size, unit, scale in ((1000, "ms", 1e3), (10, "us", 1e6)):
        for name in args.layers:
            times = _timed(_columns(name, size, rng), args.repeat if size > 10 else 50 * args.repeat, args.rounds)
            if header is None:
                header = ["layer", "size", *times]
                print("| " + " | ".join(header) + " | array-api on numpy / numpy |")
                print("|" + " --- |" * (len(header) + 1))
            base = times["numpy class"]
            cells = [f"{t * scale:.1f} {unit}" if size > 10 else f"{t * scale:.0f} {unit}" for t in times.values()]
            print(f"| {name} | {size}x{size} | " + " | ".join(cells) + f" | {times['array-api on numpy'] / base:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
