"""Every layer of issue 7's table, at both sizes: generated numpy, generated fused, hand-written
numpy, and PyTorch eager and jax.jit when they are installed, in one process.

A call is one ``forward`` plus one ``backward`` (elementwise layers and softmax-with-loss),
with the parameter gradients for Affine, and a whole SGD step for the network
(``gradient`` then ``params[k] -= 0.1 * grads[k]``).  Everything runs in float64 unless
``--dtype float32``.  A round takes one sample of every (case, variant) in a shuffled
order, so that drift and the neighbours' load hit every variant alike; a sample is the
mean of ``number`` back-to-back calls (about 10 ms); the tables give medians over rounds.

Physical bounds: the copy bandwidth of each case's own traffic (a copy that moves as many
bytes as the case must, so with the same footprint in the caches, timed as two more variants
of the case in the same rounds: numpy's one thread and numba's every core, the faster median)
and the matrix-product rate (a 1024x1024 float64 product, measured at start).  A case's bound
is the larger of (bytes it must move / bandwidth) and (FLOPs of its matrix products / rate);
``x bound`` is the time divided by that bound (1.0 would be perfect).
Page faults per call are the ``ru_minflt`` difference around a separate batch of calls.

Outputs and gradients of every variant are compared with the hand-written ones first.

Run: ``python -m benchmarks [--rounds 30] [--repeat 3] [--dtype float32] [--blocked] [--only TEXT] [--markdown FILE]``.
"""
from __future__ import annotations

import os
import sys

#: OpenBLAS's idle threads spin for about 0.1 s after every matrix product (THREAD_TIMEOUT 28:
#: 2**28 cycles) and hold a core that the next sample's threads need, whichever library they
#: belong to; in one process that times unrelated cases in turn, that is noise for every
#: multi-threaded variant (ours, PyTorch's, BLAS's own).  Let them sleep at once, before numpy
#: loads OpenBLAS, unless the user set it or asked for the default (``--blas-spin``).
BLAS_SPIN = "--blas-spin" in sys.argv
if not BLAS_SPIN:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
from benchmarks import arrays as hand_arrays  # noqa: E402
from benchmarks import elementwise as hand_elementwise  # noqa: E402
import symbackprop  # noqa: E402

VARIANTS = ("numpy", "fused", "hand", "torch", "jax")


# -- optional peers ---------------------------------------------------------------------------
def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _jax():
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    return jax


# -- cases ----------------------------------------------------------------------------------------
def layer_step(layer, inputs: list, dout) -> Callable:
    """A call of ``layer``: ``forward(*inputs)``, then ``backward(dout)``, whose result it returns."""
    def step():
        layer.forward(*inputs)
        return layer.backward(dout)
    return step


def layer_outputs(layer, inputs: list, dout, *kept: str) -> Callable:
    """The arrays of a call to compare: output, input gradient, then the ``kept`` attributes."""
    def outputs():
        out = [np.array(layer.forward(*inputs)), np.array(layer.backward(np.array(dout) if np.ndim(dout) else dout))]
        return out + [getattr(layer, name).copy() for name in kept]
    return outputs


class Case:
    """One row: a name, the calls of each variant, and what the call must move and compute.

    ``calls[variant]`` is ``(step, outputs)``: ``step()`` runs one call; ``outputs()`` runs
    one and returns the arrays to compare.
    """

    def __init__(self, name: str, nbytes: float, flops: float = 0.0):
        self.name, self.nbytes, self.flops = name, nbytes, flops
        self.calls: dict[str, tuple[Callable, Callable]] = {}
        self.floor: tuple[Callable, Callable, float] | None = None  # (calls on n and on n/2 elements, scale)

    def set_floor(self, make: Callable, args: list, count: int) -> None:
        """The fused layer's arithmetic without the memory traffic: ``make()`` layers called on
        ``args`` (small enough for the L2 cache, and serial) and on their first halves; the
        difference of the two times is the cost of half of ``args``' elements without the fixed
        cost of a call.  Scaled to the ``count`` elements of the case, divided by the cores."""
        halves = [a[:len(a) // 2].copy() if np.ndim(a) else a for a in args]
        steps = [layer_step(make(), values[:-1], values[-1]) for values in (args, halves)]
        half = np.size(args[0]) - np.size(halves[0])
        self.floor = (steps[0], steps[1], count / (half * (os.cpu_count() or 1)))


def _elementwise(name: str, decl: str, hand: type, shape: tuple, dtype, rng, peers) -> Case:
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    derivation = symbackprop.load(decl).derive()
    mask = any(c.mask for c in derivation.cache)  # forward writes it, backward reads it
    per_element = 4 * x.itemsize + 2 if mask else 5 * x.itemsize  # x, y (+ mask); dout, y or mask, dx
    case = Case(f"{name} {shape[0]}x{shape[1]}", per_element * x.size)
    for variant, cls in (("numpy", symbackprop.compile(derivation)), ("fused", symbackprop.compile(derivation, "fused")), ("hand", hand)):
        layer = cls()
        case.calls[variant] = (layer_step(layer, [x], dout), layer_outputs(layer, [x], dout))
    case.set_floor(symbackprop.compile(derivation, "fused"), [x.reshape(-1)[:1 << 14].copy(), dout.reshape(-1)[:1 << 14].copy()],
                   x.size)
    torch, jax = peers
    fn = {"Sigmoid": ("sigmoid", "sigmoid"), "ReLU": ("relu", "relu"), "Tanh": ("tanh", "tanh")}[name]
    if torch is not None:
        tx, tdout = torch.from_numpy(x.copy()).requires_grad_(), torch.from_numpy(dout)
        top = getattr(torch, fn[0])

        def tstep():
            y = top(tx)
            y.backward(tdout)
            g = tx.grad
            tx.grad = None
            return y, g
        case.calls["torch"] = (tstep, lambda: [a.detach().numpy().copy() for a in tstep()])
    if jax is not None:
        jnp = jax.numpy
        jop = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}[fn[1]]
        jx, jdout = jnp.asarray(x), jnp.asarray(dout)

        @jax.jit
        def both(a, g):
            y, vjp = jax.vjp(jop, a)
            return y, vjp(g)[0]
        case.calls["jax"] = (lambda: jax.block_until_ready(both(jx, jdout)),
                             lambda: [np.asarray(a) for a in both(jx, jdout)])
    return case


def _softmax_with_loss(n: int, k: int, dtype, rng, peers) -> Case:
    x = rng.standard_normal((n, k)).astype(dtype)
    labels = rng.integers(0, k, n)
    t = np.eye(k, dtype=dtype)[labels]
    case = Case(f"SoftmaxWithLoss {n}x{k}", 6 * x.nbytes)  # read x, t, write y; read y, t, write dx
    derivation = symbackprop.load("softmax_with_loss").derive()
    for variant, cls in (("numpy", symbackprop.compile(derivation)), ("fused", symbackprop.compile(derivation, "fused")),
                         ("hand", hand_arrays.SoftmaxWithLoss)):
        layer = cls()
        case.calls[variant] = (layer_step(layer, [x, t], 1.0), layer_outputs(layer, [x, t], 1.0))
    rows = max(1, (1 << 14) // k)
    case.set_floor(symbackprop.compile(derivation, "fused"), [x[:rows].copy(), t[:rows].copy(), 1.0], x.size)
    torch, jax = peers
    if torch is not None:
        tx, tt = torch.from_numpy(x.copy()).requires_grad_(), torch.from_numpy(t)

        def tstep():
            loss = -(tt * torch.log_softmax(tx, 1)).sum() / n
            loss.backward()
            g = tx.grad
            tx.grad = None
            return loss, g
        case.calls["torch"] = (tstep, lambda: [a.detach().numpy().copy() for a in tstep()])
    if jax is not None:
        jnp = jax.numpy
        jx, jt = jnp.asarray(x), jnp.asarray(t)

        @jax.jit
        def both(a, tt):
            return jax.value_and_grad(lambda z: -jnp.sum(tt * jax.nn.log_softmax(z, axis=1)) / n)(a)
        case.calls["jax"] = (lambda: jax.block_until_ready(both(jx, jt)),
                             lambda: [np.asarray(a) for a in both(jx, jt)])
    return case


def _affine(n: int, d: int, m: int, dtype, rng, peers) -> Case:
    x = rng.standard_normal((n, d)).astype(dtype)
    W, b = (0.01 * rng.standard_normal((d, m))).astype(dtype), rng.standard_normal(m).astype(dtype)
    dout = rng.standard_normal((n, m)).astype(dtype)
    item = x.itemsize
    case = Case(f"Affine {n}x{d} -> {m}", item * (2 * x.size + 3 * W.size + 2 * n * m + x.size), 6.0 * n * d * m)
    cls = symbackprop.load("affine")
    for variant, layer in (("numpy", cls.compile()(W, b)), ("fused", cls.compile("fused")(W, b)),
                           ("hand", hand_arrays.Affine(W, b))):
        case.calls[variant] = (layer_step(layer, [x], dout), layer_outputs(layer, [x], dout, "dW", "db"))
    torch, jax = peers
    if torch is not None:
        tx, tW, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, W, b))
        tdout = torch.from_numpy(dout)

        def tstep():
            y = tx @ tW + tb
            y.backward(tdout)
            grads = [tx.grad, tW.grad, tb.grad]
            tx.grad = tW.grad = tb.grad = None
            return [y, *grads]
        case.calls["torch"] = (tstep, lambda: [a.detach().numpy().copy() for a in tstep()])
    if jax is not None:
        jnp = jax.numpy
        args = [jnp.asarray(a) for a in (x, W, b, dout)]

        @jax.jit
        def both(a, w, bb, g):
            y, vjp = jax.vjp(lambda a_, w_, b_: a_ @ w_ + b_, a, w, bb)
            return (y, *vjp(g))
        case.calls["jax"] = (lambda: jax.block_until_ready(both(*args)),
                             lambda: [np.asarray(a) for a in both(*args)])
    return case


def _network(n: int, dtype, rng, peers) -> Case:
    d, h, k = 784, 50, 10
    cls = symbackprop.load("two_layer_net")
    init = cls.compile().initialized(D=d, H=h, K=k, seed=0).params
    names = ("W1", "b1", "W2", "b2")
    p0 = {q: init[q].astype(dtype) for q in names}
    x = rng.random((n, d)).astype(dtype)
    t = np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    item = x.itemsize
    nbytes = item * (x.size + 2 * sum(a.size for a in p0.values()) * 2 + 6 * n * h + 6 * n * k)
    case = Case(f"TwoLayerNet step, batch {n}", nbytes, 6.0 * n * (d * h + h * k))

    def sgd(net):
        grads = net.gradient(x, t)
        for q in names:
            net.params[q] -= 0.1 * grads[q]
        return grads

    for variant, make in (("numpy", cls.compile()), ("fused", cls.compile("fused")), ("hand", hand_arrays.TwoLayerNet)):
        net = make(*(p0[q].copy() for q in names))
        reference = make(*(p0[q].copy() for q in names))

        def outputs(reference=reference):
            loss = reference.loss(x, t)
            grads = reference.gradient(x, t)
            return [np.array(loss)] + [np.array(grads[q]) for q in names]
        case.calls[variant] = ((lambda net=net: sgd(net)), outputs)
    torch, jax = peers
    if torch is not None:
        tp = [torch.from_numpy(p0[q].copy()).requires_grad_() for q in names]
        tx, tt = torch.from_numpy(x), torch.from_numpy(t)

        def tloss(params):
            W1, b1, W2, b2 = params
            return -(tt * torch.log_softmax(torch.relu(tx @ W1 + b1) @ W2 + b2, 1)).sum() / n

        def tstep():
            loss = tloss(tp)
            loss.backward()
            grads = [p.grad for p in tp]
            with torch.no_grad():
                for p in tp:
                    p -= 0.1 * p.grad
                    p.grad = None
            return grads

        def toutputs():
            fresh = [torch.from_numpy(p0[q].copy()).requires_grad_() for q in names]
            loss = tloss(fresh)
            loss.backward()
            return [loss.detach().numpy().copy()] + [p.grad.numpy().copy() for p in fresh]
        case.calls["torch"] = (tstep, toutputs)
    if jax is not None:
        jnp = jax.numpy
        jx, jt = jnp.asarray(x), jnp.asarray(t)

        def jloss(params):
            W1, b1, W2, b2 = params
            return -jnp.sum(jt * jax.nn.log_softmax(jax.nn.relu(jx @ W1 + b1) @ W2 + b2, axis=1)) / n

        @jax.jit
        def jstep(params):
            loss, grads = jax.value_and_grad(jloss)(params)
            return [p - 0.1 * g for p, g in zip(params, grads)], loss, grads
        state = {"params": [jnp.asarray(p0[q]) for q in names]}

        def run():
            state["params"], _, grads = jstep(state["params"])
            return jax.block_until_ready(grads)

        def joutputs():
            _, loss, grads = jstep([jnp.asarray(p0[q]) for q in names])
            return [np.asarray(loss)] + [np.asarray(g) for g in grads]
        case.calls["jax"] = (run, joutputs)
    return case


def make_cases(dtype, quick: bool, peers) -> list[Case]:
    """Every row of the issue's table, each elementwise layer at both sizes."""
    rng = np.random.default_rng(0)
    cases = []
    sizes = [(100, 784), (1000, 1000)]
    for name, decl, hand in (("Sigmoid", "sigmoid", hand_elementwise.Sigmoid),
                             ("ReLU", "relu", hand_elementwise.Relu), ("Tanh", "tanh", hand_elementwise.Tanh)):
        cases += [_elementwise(name, decl, hand, shape, dtype, rng, peers) for shape in sizes]
    cases += [_softmax_with_loss(n, k, dtype, rng, peers) for n, k in ((100, 10), (1000, 1000))]
    cases += [_affine(100, 784, 50, dtype, rng, peers), _affine(1000, 784, 50, dtype, rng, peers)]
    cases += [_network(100, dtype, rng, peers), _network(1000, dtype, rng, peers)]
    return cases[:4] if quick else cases


# -- measuring -----------------------------------------------------------------------------------
def check(cases: list[Case], dtype) -> None:
    """Every variant's outputs against the hand-written ones (losses loosely: the book adds 1e-7)."""
    rtol = 1e-6 if dtype == np.float64 else 2e-3
    for case in cases:
        want = case.calls["hand"][1]()
        for variant, (_, outputs) in case.calls.items():
            got = outputs()
            for i, (g, w) in enumerate(zip(got, want)):
                tol = 1e-3 if np.ndim(w) == 0 else rtol  # values near 0 of a long float32 sum: judged absolutely
                atol = tol * (1e-3 if dtype == np.float64 else 1.0) * float(np.max(np.abs(w), initial=0.0))
                if np.shape(g) != np.shape(w) or not np.allclose(g, w, rtol=tol, atol=atol):
                    raise AssertionError(f"{case.name}: {variant} differs from hand-written numpy (output {i})")


def per_call(fn: Callable, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def faults_per_call(fn: Callable, count: int) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(count):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / count


COPIES = ("copy, numpy", "copy, numba")


def add_copies(case: Case) -> None:
    """Two more variants of ``case`` that move as many bytes as it must and nothing else: an
    array of ``nbytes / 2`` copied into another (same traffic, same footprint in the caches)
    by numpy (one thread) and by a numba loop (every core).  They are timed in the same rounds
    as the layers, so the bound sees the same caches and the same neighbours."""
    a = np.random.default_rng(1).standard_normal(max(1024, int(case.nbytes) // 16))
    b = np.empty_like(a)
    case.calls[COPIES[0]] = (lambda: np.copyto(b, a), None)
    try:
        import numba as nb
    except ImportError:
        return

    @nb.njit(parallel=True)
    def copy(src, dst):
        for i in nb.prange(src.shape[0]):
            dst[i] = src[i]
    case.calls[COPIES[1]] = (lambda: copy(a, b), None)


def bandwidth(case: Case, seconds: dict) -> tuple[float, str]:
    """Bytes per second of the faster copy of ``case`` (median time), and which it was."""
    times = {how: seconds[case.name, how] for how in COPIES if (case.name, how) in seconds}
    how = min(times, key=times.get)
    return case.nbytes / times[how], how


def matmul_rate() -> float:
    """FLOP/s of a 1024x1024 float64 matrix product (BLAS, every core), best of several."""
    a = np.random.default_rng(2).standard_normal((1024, 1024))
    c = np.empty_like(a)
    best = 0.0
    for _ in range(10):
        start = time.perf_counter()
        np.matmul(a, a, out=c)
        best = max(best, 2 * 1024 ** 3 / (time.perf_counter() - start))
    return best


def measure(cases: list[Case], rounds: int, pause: float = 0.0, sample: float = 0.01,
            blocked: bool = False) -> tuple[dict, dict]:
    """Median seconds per call and page faults per call of every (case, variant); a sample
    lasts about ``sample`` seconds for the fastest variant of its case."""
    keys = [(c, v) for c in cases for v in c.calls]
    for case, variant in keys:  # warm up: compile, fill the buffers
        for _ in range(3):
            case.calls[variant][0]()
    number = {c.name: max(1, round(sample / min(per_call(step, 3) for v, (step, _) in c.calls.items() if v not in COPIES)))
              for c in cases}
    samples: dict = {(c.name, v): [] for c, v in keys}
    if blocked:  # each (case, variant) alone, its samples back to back: no other library's threads around
        for case, variant in keys:
            samples[case.name, variant] = [per_call(case.calls[variant][0], number[case.name]) for _ in range(rounds)]
    for _ in range(0 if blocked else rounds):
        random.shuffle(keys)
        for case, variant in keys:
            time.sleep(pause)  # the previous variant's thread pool stops spinning: the cores are free
            samples[case.name, variant].append(per_call(case.calls[variant][0], number[case.name]))
    seconds = {k: statistics.median(v) for k, v in samples.items()}
    faults = {(c.name, v): faults_per_call(c.calls[v][0], max(10, number[c.name])) for c, v in keys}
    return seconds, faults


# -- numexpr or numba: the choice of the fused backend ---------------------------------------------
NUMEXPR_LAYERS = {  # name -> (forward statements, backward statements), as the fused kernels compute them
    "sigmoid": ([("y", "1/(1 + exp(-x))")], [("dx", "(1 - y)*dout*y")]),
    "tanh": ([("y", "tanh(x)")], [("dx", "(1 - y**2)*dout")]),
    "relu": ([("mask", "x > 0"), ("y", "where(x > 0, x, 0)")], [("dx", "where(mask, dout, 0)")]),
}


def _site_size(*packages: str) -> float:
    """Megabytes installed by these packages (their folders in site-packages)."""
    import importlib.util

    total = 0
    for name in packages:
        found = importlib.util.find_spec(name)
        if found is None or not found.submodule_search_locations:
            continue
        for folder in found.submodule_search_locations:
            total += sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
    return total / 1e6


def compare_backends(rounds: int) -> list[str]:
    """numexpr (one ``evaluate`` per statement, into kept buffers) against the numba kernels of
    the fused backend, at 1000x1000 float64: time per forward + backward, first-call time in
    this process, and install size."""
    import numexpr as ne

    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((2, 1000, 1000))
    lines = [f"- numexpr {ne.__version__} ({ne.nthreads} threads, VML {'on' if ne.use_vml else 'off'}), "
             f"installs {_site_size('numexpr'):.0f} MB; numba with llvmlite installs "
             f"{_site_size('numba', 'llvmlite'):.0f} MB", "",
             "| layer 1000x1000 | numpy backend (ms) | numexpr (ms) | numba fused (ms) | numexpr first call (ms) "
             "| numba first call (s) |", "|---|---:|---:|---:|---:|---:|"]
    for name, (forward, backward) in NUMEXPR_LAYERS.items():
        env = {"x": x, "dout": dout}
        out = {k: np.empty(x.shape, bool if k == "mask" else float) for k, _ in forward + backward}

        def numexpr_call():
            for target, text in forward + backward:
                ne.evaluate(text, local_dict=env, out=out[target])
                env[target] = out[target]
        start = time.perf_counter()
        numexpr_call()
        numexpr_first = time.perf_counter() - start
        derivation = symbackprop.load(name).derive()
        layer = symbackprop.compile(derivation, "fused")()
        start = time.perf_counter()
        layer.forward(x)
        layer.backward(dout)
        numba_first = time.perf_counter() - start
        plain = symbackprop.compile(derivation)()
        calls = {"numpy": lambda: plain.backward(dout) if plain.forward(x) is not None else None,
                 "numexpr": numexpr_call, "numba": lambda: layer.backward(dout) if layer.forward(x) is not None else None}
        np.testing.assert_allclose(out["dx"], layer.backward(dout), rtol=1e-12, atol=1e-300)
        samples = {k: [] for k in calls}
        for _ in range(rounds):
            for k in random.sample(list(calls), len(calls)):
                samples[k].append(per_call(calls[k], 3))
        ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
        lines.append(f"| {name} | {ms['numpy']:.2f} | {ms['numexpr']:.2f} | {ms['numba']:.2f} | "
                     f"{1e3 * numexpr_first:.1f} | {numba_first:.2f} |")
    return lines


# -- reporting ------------------------------------------------------------------------------------
def floors(cases: list[Case], rounds: int) -> dict[str, float]:
    """Seconds per call of each case's arithmetic alone (see :meth:`Case.set_floor`), medians."""
    found = {}
    for case in (c for c in cases if c.floor):
        full, half, scale = case.floor
        for step in (full, half):
            for _ in range(3):
                step()
        number = max(1, round(0.005 / per_call(full, 3)))
        differences = [per_call(full, number) - per_call(half, number) for _ in range(rounds)]
        found[case.name] = scale * statistics.median(differences)
    return found


def floor_table(cases, seconds, floor, rate) -> list[str]:
    """Where the fused time goes: the memory bound, the arithmetic alone, and the fused time."""
    lines = ["| case | fused (µs) | memory bound (µs) | arithmetic alone (µs) | fused / the larger |", "|---|---:|---:|---:|---:|"]
    for c in cases:
        if c.name not in floor:
            continue
        bound = max(c.nbytes / bandwidth(c, seconds)[0], c.flops / rate)
        fused = seconds[c.name, "fused"]
        lines.append(f"| {c.name} | {1e6 * fused:.0f} | {1e6 * bound:.0f} | {1e6 * floor[c.name]:.0f} | "
                     f"{fused / max(bound, floor[c.name]):.2f} |")
    return lines


def _spread(values: list[float]) -> str:
    """The median of ``values``, and their range when there are several."""
    mid = f"{statistics.median(values):.2f}"
    return mid if len(values) == 1 else f"{mid} ({min(values):.2f}-{max(values):.2f})"


def table(cases, runs: list[dict], faults, rate) -> list[str]:
    """The main table: medians over runs of each (case, variant); ratios with their range over runs."""
    seconds = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
    present = [v for v in VARIANTS if any(v in c.calls for c in cases)]
    head = ["case", *[f"{v} (µs)" for v in present], *[f"{v} / hand" for v in present if v != "hand"],
            "fused / best peer", "bound (µs) at GB/s", *[f"{v} x bound" for v in ("numpy", "fused")], "page faults per call (" + " / ".join(present) + ")"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for c in cases:
        t = {v: seconds.get((c.name, v)) for v in present}
        rate_of_copy = bandwidth(c, seconds)[0]
        bound = max(c.nbytes / rate_of_copy, c.flops / rate)
        peers = [t[v] for v in ("torch", "jax") if t.get(v)]
        row = [c.name, *[f"{1e6 * t[v]:.1f}" if t[v] else "-" for v in present]]
        row += [_spread([run[c.name, v] / run[c.name, "hand"] for run in runs]) if t[v] else "-"
                for v in present if v != "hand"]
        best = [min(run[c.name, v] for v in ("torch", "jax") if (c.name, v) in run) for run in runs] if peers else []
        row.append(_spread([run[c.name, "fused"] / b for run, b in zip(runs, best)]) if peers else "-")
        row.append(f"{1e6 * bound:.0f} at {rate_of_copy / 1e9:.0f}" + (" (FLOPs)" if c.flops / rate > c.nbytes / rate_of_copy else ""))
        row += [f"{t[v] / bound:.1f}" for v in ("numpy", "fused")]
        row.append(" / ".join(f"{faults[c.name, v]:.0f}" if (c.name, v) in faults else "-" for v in present))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def header(args, cases, seconds, rate, peers) -> list[str]:
    torch, jax = peers
    load = os.getloadavg()
    import numba

    copies = [bandwidth(c, seconds) for c in cases]

    return [f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"load average before the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)",
            f"- python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
            f"torch {torch.__version__ if torch else 'not installed'} ({torch.get_num_threads() if torch else 0} threads), "
            f"jax {jax.__version__ if jax else 'not installed'}; OPENBLAS_THREAD_TIMEOUT="
            f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset (28: threads spin 0.1 s)')}",
            f"- {args.dtype}, {args.rounds} {'samples in a block per variant' if args.blocked else 'interleaved rounds'}"
            f"{f' in each of {args.repeat} runs (medians of the runs; ratios: median (range))' if args.repeat > 1 else ''}, "
            f"medians; copy bandwidth at each case's footprint {min(b for b, _ in copies) / 1e9:.0f} to "
            f"{max(b for b, _ in copies) / 1e9:.0f} GB/s ({' or '.join(sorted({how for _, how in copies}))}), "
            f"matrix product {rate / 1e9:.0f} GFLOP/s"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the whole protocol this many times: medians of the runs' medians, ratios with "
                             "their range over the runs")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--quick", action="store_true", help="the elementwise rows only (a smoke test)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds to wait before each sample (the thread pools of the variant timed before "
                             "stop spinning, and go to sleep; default 0)")
    parser.add_argument("--sample", type=float, default=0.01, help="seconds per sample (default 0.01)")
    parser.add_argument("--blocked", action="store_true",
                        help="time each (case, variant) in one block of samples instead of interleaved rounds")
    parser.add_argument("--no-peers", action="store_true", help="skip PyTorch and JAX even when installed")
    parser.add_argument("--only", metavar="TEXT", action="append",
                        help="only the cases whose name contains TEXT (repeatable), e.g. --only 1000x1000")
    parser.add_argument("--markdown", metavar="FILE", help="also append the report to FILE")
    parser.add_argument("--backends", action="store_true", help="numexpr against numba for the fused backend, only")
    parser.add_argument("--blas-spin", action="store_true",
                        help="leave OpenBLAS's threads spinning 0.1 s after each product (its default; see the top of "
                             "benchmarks/run.py)")
    args = parser.parse_args(argv)
    if args.backends:
        print("\n".join(compare_backends(args.rounds)))
        return
    peers = (None, None) if args.no_peers else (_torch(), _jax())
    dtype = np.dtype(args.dtype)
    cases = [c for c in make_cases(dtype, args.quick, peers) if not args.only or any(t in c.name for t in args.only)]
    rate = matmul_rate()
    check(cases, dtype)
    for case in cases:
        add_copies(case)
    runs = []
    for _ in range(args.repeat):
        seconds, faults = measure(cases, args.rounds, args.pause, args.sample, args.blocked)
        runs.append(seconds)
    seconds = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
    report = header(args, cases, seconds, rate, peers)
    report += ["", *table(cases, runs, faults, rate)]
    report += ["", "Arithmetic alone: the fused layer's time on 16384 elements less its time on 8192 (in the L2 "
               "cache, one core, no fixed cost of a call), scaled to the case's elements and divided by the cores.", "", *floor_table(cases, seconds, floors(cases, args.rounds), rate)]
    load = os.getloadavg()
    report.append(f"\nload average after the run: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    print("\n".join(report))
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as fh:
            fh.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
