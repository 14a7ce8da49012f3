"""Index notation at the book's sizes: the generated Convolution and MaxPooling (one forward
plus one backward) against the book's im2col classes (``examples/book_layers.py``, from the
book's repository) and PyTorch's ``conv2d``/``max_pool2d`` with autograd, in one process.

Sizes: the book's SimpleConvNet on MNIST, N = 100, C = 1, 28x28, 30 filters of 5x5, stride 1,
pad 0; pooling 2x2, stride 2, on the convolution's output (100x30x24x24).  float64.  A round
times every variant once in a shuffled order (a sample is the mean of ``number`` back-to-back
calls); the table gives medians over rounds and each variant's ratio to the book's class.
Outputs and gradients are compared with the book's first.

Run: ``python -m benchmarks.windows [--rounds 15] [--threads N]``.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
import symbackprop  # noqa: E402
from examples import book_layers as book  # noqa: E402


def cases(rng):
    x = rng.standard_normal((100, 1, 28, 28))
    W, b = 0.01 * rng.standard_normal((30, 1, 5, 5)), np.zeros(30)
    dconv = rng.standard_normal((100, 30, 24, 24))
    px = rng.standard_normal((100, 30, 24, 24))
    dpool = rng.standard_normal((100, 30, 12, 12))
    Conv = symbackprop.load("convolution").compile()
    Pool = symbackprop.load("max_pooling").compile()

    def numpy_step(layer, x_, d):
        def step():
            layer.forward(x_)
            return layer.backward(d)
        return step

    out = {
        "convolution": {"generated": (Conv(W, b), x, dconv), "book im2col": (book.Convolution(W, b), x, dconv)},
        "max pooling": {"generated": (Pool(2, 2, 2, 0), px, dpool), "book im2col": (book.Pooling(2, 2, 2, 0), px, dpool)},
    }
    calls = {case: {name: numpy_step(*args) for name, args in variants.items()} for case, variants in out.items()}
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return out, calls
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    tpx = torch.tensor(px, requires_grad=True)
    tdc, tdp = torch.tensor(dconv), torch.tensor(dpool)

    def torch_conv():
        tx.grad = tW.grad = tb.grad = None
        F.conv2d(tx, tW, tb).backward(tdc)
        return tx.grad

    def torch_pool():
        tpx.grad = None
        F.max_pool2d(tpx, 2, 2).backward(tdp)
        return tpx.grad

    calls["convolution"]["torch conv2d"] = torch_conv
    calls["max pooling"]["torch max_pool2d"] = torch_pool
    return out, calls


def check(out) -> None:
    for case, variants in out.items():
        (gen, x, d), (ref, _, _) = variants["generated"], variants["book im2col"]
        np.testing.assert_allclose(gen.forward(x), ref.forward(x), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gen.backward(d), ref.backward(d), rtol=1e-10, atol=1e-12)
        for p in ("dW", "db"):
            if hasattr(ref, p):
                np.testing.assert_allclose(getattr(gen, p), getattr(ref, p), rtol=1e-10, atol=1e-10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=3, help="calls per sample")
    parser.add_argument("--threads", type=int, default=None, help="torch's threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    out, calls = cases(np.random.default_rng(0))
    check(out)
    jobs = [(case, name) for case, variants in calls.items() for name in variants]
    times: dict = {job: [] for job in jobs}
    for job in jobs:  # warm up
        calls[job[0]][job[1]]()
    order = random.Random(0)
    for _ in range(args.rounds):
        order.shuffle(jobs)
        for case, name in jobs:
            fn = calls[case][name]
            start = time.perf_counter()
            for _ in range(args.number):
                fn()
            times[(case, name)].append((time.perf_counter() - start) / args.number)
    print(f"forward + backward, float64, median of {args.rounds} rounds (ratio: to the book's im2col class)")
    print(f"{'case':<13} {'variant':<18} {'ms':>8} {'ratio':>6}")
    for case, variants in calls.items():
        book_ms = statistics.median(times[(case, "book im2col")]) * 1e3
        for name in variants:
            ms = statistics.median(times[(case, name)]) * 1e3
            print(f"{case:<13} {name:<18} {ms:8.2f} {ms / book_ms:6.2f}")


if __name__ == "__main__":
    main()
