"""The generated torch op against autograd of the composed forward and PyTorch's built-in.

For each layer at 1000x1000 on the CPU: forward + backward time (best of ``repeat`` in each of 3 interleaved rounds) and the
bytes autograd saves for the backward (``torch.autograd.graph.saved_tensors_hooks``), of
(a) the generated ``autograd.Function`` (``--backend torch``), (a') the generated
``torch.library.custom_op`` (``--backend torch-op``), (b) the same forward composed from
torch operations (the generated forward run as plain operations, differentiated by
autograd), (c) the built-in where PyTorch has one; and for jax the generated ``custom_vjp``
against ``jax.grad`` of the composed forward, both under ``jit``; for the elementwise rows also
(e) the forward composed from elementary torch operations (``ELEMENTARY``).  Ratios are of one run.
Softmax-with-loss takes one-hot float targets in every column (``F.cross_entropy`` with
class probabilities), LayerNorm a (1000,) scale and shift (``F.layer_norm``).

    python -m benchmarks.frameworks [--dtype float32] [--repeat 5] [--threads 1] [--no-jax] [--steady-malloc]

``--steady-malloc`` fixes glibc's thresholds (``mallopt``: no ``mmap`` below 256 MB, no
trimming below 1 GB), so that a freed array's pages are used again: by default glibc moves
its thresholds as arrays are freed, and some patterns of three arrays (ReLU's ``y``, mask
and ``dx``) then take fresh pages from the kernel on every call (960 page faults a call
for 1000x1000 float32, measured), which costs more than the arithmetic. PyTorch's CPU
tuning guide recommends jemalloc or tcmalloc for the same reason; this is glibc's
equivalent, and every column runs under it alike.
"""
from __future__ import annotations

import argparse
import ctypes
import time

import torch
import torch.nn.functional as F

import symbackprop
from tests.fixtures.frameworks import saved_bytes  # the tests' measure of saved tensors

BUILTIN = {
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "swish": F.silu, "mish": F.mish,
    "gelu": lambda x: F.gelu(x, approximate="tanh"), "softplus": F.softplus,
    "relu": torch.relu, "softmax_with_loss": F.cross_entropy,
    "layer_norm": lambda x, gamma, beta: F.layer_norm(x, gamma.shape, gamma, beta, eps=1e-5),
}
#: The elementwise forwards composed from elementary torch operations, as a user would write
#: them without the fused kernels (which the generated forward itself uses, so that column
#: (b) of these rows is autograd of the built-in's kernels): what autograd saves there.
ELEMENTARY = {
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)), "tanh": torch.tanh, "swish": lambda x: x * torch.sigmoid(x),
    "mish": lambda x: x * torch.tanh(torch.log1p(torch.exp(x))),
    "gelu": lambda x: 0.5 * x * (1 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))),
    "softplus": lambda x: torch.log1p(torch.exp(x)), "relu": lambda x: torch.where(x > 0, x, 0),
}
LAYERS = ["sigmoid", "tanh", "swish", "mish", "gelu", "softplus", "relu", "softmax_with_loss", "layer_norm"]
SIZE = 1000


class _Ctx:
    def save_for_backward(self, *tensors):
        self.saved = tensors


def _arguments(name: str, dtype, gen) -> tuple[list, torch.Tensor]:
    """The op's arguments (differentiable ones requiring gradients) and dout, at 1000x1000."""
    x = torch.randn(SIZE, SIZE, dtype=dtype, generator=gen).requires_grad_()
    if name == "softmax_with_loss":
        labels = torch.randint(0, SIZE, (SIZE,), generator=gen)
        return [x, torch.eye(SIZE, dtype=dtype)[labels]], torch.tensor(1.0, dtype=dtype)
    dout = torch.randn(SIZE, SIZE, dtype=dtype, generator=gen)
    if name == "layer_norm":
        gamma = (1 + 0.1 * torch.randn(SIZE, dtype=dtype, generator=gen)).requires_grad_()
        return [x, gamma, torch.randn(SIZE, dtype=dtype, generator=gen).requires_grad_()], dout
    return [x], dout


def _timed(columns: list, args, dout, repeat: int, rounds: int = 3) -> list[tuple[float, int]]:
    """(best time, saved bytes) of each function in ``columns``, measured in interleaved
    rounds (the first-measured column pays no warm-up or neighbour's noise of its own)."""
    wrt = [a for a in args if a.requires_grad]
    steps = [lambda fn=fn: torch.autograd.grad(fn(*args), wrt, dout) for fn in columns]
    for step in steps:
        step()
    best = [float("inf")] * len(steps)
    for _ in range(rounds):
        best = [min(b, *(_once(step) for _ in range(repeat))) for b, step in zip(best, steps)]
    return [(b, sum(saved_bytes(lambda fn=fn: fn(*args)))) for b, fn in zip(best, columns)]


def _once(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _value_and_cotangents(f, d, arguments):
    """The forward's value and the cotangents: a training step needs both (the value alone
    returned, XLA would drop a forward whose residuals the backward does not read)."""
    import jax

    value, pull = jax.vjp(f, *arguments)
    return value, pull(d)


def _jax_row(name: str, args, dout, repeat: int, rounds: int = 3) -> tuple[float, float]:
    """Best times of the generated ``custom_vjp`` and of ``jax.vjp`` of the composed forward
    (value and cotangents), both under ``jit``, on arrays already on the device, in interleaved rounds (as the torch
    columns: a neighbour's load then falls on both alike)."""
    import jax

    f = symbackprop.compile(symbackprop.load(name), backend="jax")
    with jax.enable_x64(dout.dtype.itemsize == 8):  # float64 stays float64
        wrt = [jax.device_put(a.detach().numpy()) for a in args if a.requires_grad]
        constants = [jax.device_put(a.numpy()) for a in args if not a.requires_grad]
        d = jax.device_put(dout.numpy())
        generated = jax.jit(lambda d, *a: _value_and_cotangents(lambda *b: f(*b, *constants), d, a))
        composed = jax.jit(lambda d, *a: _value_and_cotangents(lambda *b: f.fwd(*b, *constants)[0], d, a))
        steps = [lambda fn=fn: jax.block_until_ready(fn(d, *wrt)) for fn in (generated, composed)]
        for step in steps:
            step()
        best = [float("inf")] * len(steps)
        for _ in range(rounds):
            best = [min(b, *(_once(step) for _ in range(repeat))) for b, step in zip(best, steps)]
    return best[0], best[1]


def _row(name: str, dtype, gen, args) -> list[float]:
    """Times (ms) and saved bytes (MB) of each torch column, then the ratios."""
    arguments, dout = _arguments(name, dtype, gen)
    declaration = symbackprop.load(name)
    function = symbackprop.compile(declaration, backend="torch").function
    custom = symbackprop.compile(declaration, backend="torch-op").function
    columns = [function.apply, custom, lambda *a: function.forward(_Ctx(), *a)]
    (gen_t, gen_b), (op_t, op_b), (comp_t, comp_b), *rest = _timed(
        columns + [BUILTIN[name]] + ([ELEMENTARY[name]] if name in ELEMENTARY else []), arguments, dout, args.repeat)
    (blt_t, blt_b), (elem_t, elem_b) = rest[0], rest[1] if len(rest) > 1 else (float("nan"), float("nan"))
    jax_ratio = float("nan")
    if not args.no_jax:
        jg, jc = _jax_row(name, arguments, dout, args.repeat)
        jax_ratio = jg / jc
    ms, mb = 1e3, 1e-6
    return [gen_t * ms, op_t * ms, comp_t * ms, blt_t * ms, elem_t * ms, gen_b * mb, op_b * mb, comp_b * mb,
            blt_b * mb, elem_b * mb, gen_t / comp_t, gen_t / blt_t, gen_t / elem_t, op_t / gen_t, jax_ratio]


def steady_malloc() -> None:
    """glibc's allocator with fixed thresholds: ``M_MMAP_THRESHOLD`` 256 MB, ``M_TRIM_THRESHOLD`` 1 GB."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_mmap_threshold, 256 << 20) and libc.mallopt(m_trim_threshold, 1 << 30)):
        raise SystemExit("frameworks: mallopt refused the thresholds")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--layers", nargs="*", default=LAYERS, choices=LAYERS)
    parser.add_argument("--threads", type=int, help="torch's intra-op threads (default: torch's own choice)")
    parser.add_argument("--steady-malloc", action="store_true", help="fixed glibc thresholds (see the docstring)")
    args = parser.parse_args(argv)
    if args.steady_malloc:
        steady_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    print(f"forward + backward, {SIZE}x{SIZE} {args.dtype}, CPU ({torch.get_num_threads()} threads"
          f"{', steady malloc' if args.steady_malloc else ''}); "
          "time in ms, saved MB; ratios generated Function/composed, /built-in, /elementary, custom op/Function, "
          "jax gen/comp")
    heads = ["gen ms", "op ms", "comp ms", "blt ms", "elem ms", "gen MB", "op MB", "comp MB", "blt MB", "elem MB",
             "t g/c", "t g/b", "t g/e", "op/gen", "jax g/c"]
    print(f"{'layer':<18}" + "".join(f"{h:>8}" for h in heads))
    for name in args.layers:
        print(f"{name:<18}" + "".join(f"{v:8.2f}" for v in _row(name, dtype, gen, args)), flush=True)


if __name__ == "__main__":
    main()
