"""Array layers: symbackprop's generated classes vs hand-written numpy (vs PyTorch eager).

Measures the wall time of one forward + backward call of: Affine (x 100x784, W 784x50,
b 50; dx, dW, db); SoftmaxWithLoss at 100x10 and 1000x1000 with one-hot t (loss, dx); and
a TwoLayerNet 784-50-10 training step at batch 100: ``grads = net.gradient(x, t)`` plus
``params[k] -= 0.1 * grads[k]``.  Variants: *generated* -- ``symbackprop.load(name).compile()``;
*hand* -- numpy in the style of "Deep Learning from Scratch" ch. 5 (Affine, masked Relu,
SoftmaxWithLoss, TwoLayerNet with an OrderedDict of layers and reversed backward: the book's
classes of ``examples/book_layers.py``, SoftmaxWithLoss's forward this file's); *torch*
-- PyTorch CPU eager autograd in float64, only when ``import torch`` works.  The hand loss
is the book's one-hot form ``-sum(t * log(y + 1e-7)) / N``; its softmax is max-shifted with
one exp per element (the book's repo calls exp twice: this is the stronger baseline).
Torch computes dx for Affine and SoftmaxWithLoss, not for the network input (numpy does).

Layers and networks are built once and reused (the network keeps training on one batch).
A sample is the mean over ``number`` back-to-back calls (calibrated per case to ~1 ms); a
round takes one sample of every (case, variant) in shuffled order, so drift hits all alike;
the table gives medians over rounds.  Page faults per call are the ru_minflt difference
around a separate batch of calls.  Losses and gradients of every variant are compared with
the hand-written ones once before timing (losses at rtol=1e-3: the book's +1e-7 shifts them).

Run: ``python benchmarks/arrays.py [--repeat 800]``.
"""
import argparse
import os
import resource
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
import symbackprop  # noqa: E402
from examples import book_layers as seed_layers  # noqa: E402
from examples.book_layers import Affine, Relu  # noqa: E402  the book's, kept once (tests' oracles)

try:
    import torch
except ImportError:
    torch = None


# Not the seed's softmax and cross_entropy_error, on purpose: one exp per element (the book's
# softmax calls exp twice) and the one-hot loss without argmax: the stronger baseline.
def softmax(x):
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def cross_entropy_error(y, t):  # one-hot t
    return -np.sum(t * np.log(y + 1e-7)) / y.shape[0]


class SoftmaxWithLoss(seed_layers.SoftmaxWithLoss):
    """The book's (backward inherited), its forward with this file's softmax and loss."""

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss


class TwoLayerNet(seed_layers.TwoLayerNet):
    """The book's TwoLayerNet (predict, loss, gradient of examples/book_layers.py), built
    from given parameters like the generated class, with the one-exp SoftmaxWithLoss above."""

    def __init__(self, W1, b1, W2, b2):  # no super().__init__: it draws random weights of the sizes
        self.params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
        self.layers = OrderedDict(Affine1=Affine(W1, b1), Relu1=Relu(), Affine2=Affine(W2, b2))
        self.lastLayer = SoftmaxWithLoss()


def sgd_step(net, x, t):
    grads = net.gradient(x, t)
    for k in ("W1", "b1", "W2", "b2"):
        net.params[k] -= 0.1 * grads[k]
    return grads


def numpy_calls(kind, a, o):
    """(timed call, check) for a numpy layer or network; check returns arrays to compare."""
    if kind == "affine":
        return (lambda: (o.forward(a["x"]), o.backward(a["dout"])),
                lambda: [o.forward(a["x"]), o.backward(a["dout"]), o.dW, o.db])
    if kind == "softmax":
        return (lambda: (o.forward(a["x"], a["t"]), o.backward(1)),
                lambda: [o.forward(a["x"], a["t"]), o.backward(1)])

    def check():
        loss = o.loss(a["x"], a["t"])
        grads = {k: v.copy() for k, v in sgd_step(o, a["x"], a["t"]).items()}
        return [loss] + [grads[k] for k in ("W1", "b1", "W2", "b2")]
    return (lambda: sgd_step(o, a["x"], a["t"])), check


def torch_calls(kind, a):
    """(timed call, check) for PyTorch eager autograd, float64; same outputs as numpy_calls."""
    T = {k: torch.from_numpy(v.copy()) for k, v in a.items()}
    names = {"affine": ("x", "W", "b"), "softmax": ("x",), "net": ("W1", "b1", "W2", "b2")}[kind]
    leaves = [T[k].requires_grad_() for k in names]

    def step():
        if kind == "affine":
            y = T["x"] @ T["W"] + T["b"]
            y.backward(T["dout"])
            first = y.detach().numpy()
        else:
            z = T["x"] if kind == "softmax" else torch.relu(T["x"] @ T["W1"] + T["b1"]) @ T["W2"] + T["b2"]
            loss = -(T["t"] * torch.log_softmax(z, 1)).sum() / z.shape[0]
            loss.backward()
            first = loss.item()
        grads = [p.grad for p in leaves]
        with torch.no_grad():
            for p in leaves:
                if kind == "net":
                    p -= 0.1 * p.grad
                p.grad = None
        return [first] + [g.numpy() for g in grads]
    return step, step


def make_cases(rng):
    """case name -> {variant: (timed call, check)}."""
    cases = {}
    x, W, b = rng.standard_normal((100, 784)), 0.01 * rng.standard_normal((784, 50)), rng.standard_normal(50)
    a = {"x": x, "W": W, "b": b, "dout": rng.standard_normal((100, 50))}
    cls = symbackprop.load("affine").compile()
    cases["Affine 100x784 @ 784x50"] = ("affine", a, cls(W.copy(), b.copy()), Affine(W.copy(), b.copy()))
    cls = symbackprop.load("softmax_with_loss").compile()
    for n, k in ((100, 10), (1000, 1000)):
        a = {"x": rng.standard_normal((n, k)), "t": np.eye(k)[rng.integers(0, k, n)]}
        cases[f"SoftmaxWithLoss {n}x{k}"] = ("softmax", a, cls(), SoftmaxWithLoss())
    cls = symbackprop.load("two_layer_net").compile()
    p = cls.initialized(D=784, H=50, K=10, seed=0).params
    a = {"x": rng.random((100, 784)), "t": np.eye(10)[rng.integers(0, 10, 100)], **p}
    names = ("W1", "b1", "W2", "b2")
    cases["TwoLayerNet step 784-50-10, N=100"] = (
        "net", a, cls(*(p[k].copy() for k in names)), TwoLayerNet(*(p[k].copy() for k in names)))
    out = {}
    for name, (kind, a, gen, hand) in cases.items():
        out[name] = {"generated": numpy_calls(kind, a, gen), "hand": numpy_calls(kind, a, hand)}
        if torch is not None:
            out[name]["torch"] = torch_calls(kind, a)
    return out


def check(cases):
    for name, variants in cases.items():
        ref = variants["hand"][1]()
        for variant in [v for v in variants if v != "hand"]:
            got = variants[variant][1]()
            assert len(got) == len(ref)
            for i, (g, r) in enumerate(zip(got, ref)):  # scalars are losses
                if not np.allclose(g, r, rtol=1e-3 if np.ndim(r) == 0 else 1e-5):
                    raise AssertionError(f"{name}: {variant} and hand-written disagree (output {i})")


def per_call(fn, number):
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def minor_faults(fn, count):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(count):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=800, help="rounds (default 800)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = make_cases(rng)
    check(cases)  # before timing; network steps also warm up here
    number = {name: max(1, round(1e-3 / per_call(v["hand"][0], 5))) for name, v in cases.items()}
    keys = [(name, variant) for name, v in cases.items() for variant in v]
    times = {key: [] for key in keys}
    for _ in range(args.repeat):
        rng.shuffle(keys)
        for name, variant in keys:
            times[name, variant].append(per_call(cases[name][variant][0], number[name]))
    us = {key: 1e6 * statistics.median(t) for key, t in times.items()}
    faults = {key: minor_faults(cases[key[0]][key[1]][0], max(20, number[key[0]])) for key in keys}

    print(f"numpy {np.__version__}, os.cpu_count() = {os.cpu_count()}, float64, median of "
          f"{args.repeat} rounds; each sample times `number` calls of forward + backward")
    if torch is None:
        print("PyTorch not installed: column omitted")
    else:
        print(f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}")
    tcols = " torch (µs) | generated / torch |" if torch is not None else ""
    print(f"\n| case | number | generated (µs) | hand-written (µs) | generated / hand |{tcols}"
          " page faults/call (gen / hand) |")
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if torch is not None else "") + "---:|")
    goals = []
    for name in cases:
        g, h = us[name, "generated"], us[name, "hand"]
        row = f"| {name} | {number[name]} | {g:.1f} | {h:.1f} | {g / h:.2f} |"
        goals.append((f"{name}: generated within 1.1x of hand-written numpy", g / h <= 1.1))
        if torch is not None:
            tt = us[name, "torch"]
            row += f" {tt:.1f} | {g / tt:.2f} |"
            if "1000x1000" not in name:
                goals.append((f"{name}: generated faster than PyTorch eager", g < tt))
        print(row + f" {faults[name, 'generated']:.1f} / {faults[name, 'hand']:.1f} |")
    print("\nProject goals (information only):")
    for text, ok in goals:
        print(f"- {'PASS' if ok else 'MISS'}  {text}")


if __name__ == "__main__":
    main()
