"""The generated torch op against autograd of the composed forward and PyTorch's built-in.

For each layer at 1000x1000 on the CPU: forward + backward time (best of ``repeat`` in each of 3 interleaved rounds) and the
bytes autograd saves for the backward (``torch.autograd.graph.saved_tensors_hooks``), of
(a) the generated ``autograd.Function`` (``--backend torch``), (a') the generated
``torch.library.custom_op`` (``--backend torch-op``), (b) the same forward composed from
torch operations (the generated forward run as plain operations, differentiated by
autograd), (c) the built-in where PyTorch has one; and for jax the generated ``custom_vjp``
against ``jax.grad`` of the composed forward, both under ``jit``.  Ratios are of one run.
Softmax-with-loss takes one-hot float targets in every column (``F.cross_entropy`` with
class probabilities), LayerNorm a (1000,) scale and shift (``F.layer_norm``).

    python -m benchmarks.frameworks [--dtype float32] [--repeat 5] [--threads 1] [--no-jax]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import symbackprop
from tests.fixtures.frameworks import saved_bytes  # the tests' measure of saved tensors

BUILTIN = {
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "swish": F.silu,
    "gelu": lambda x: F.gelu(x, approximate="tanh"), "softplus": F.softplus,
    "relu": torch.relu, "softmax_with_loss": F.cross_entropy,
    "layer_norm": lambda x, gamma, beta: F.layer_norm(x, gamma.shape, gamma, beta, eps=1e-5),
}
LAYERS = ["sigmoid", "tanh", "swish", "gelu", "softplus", "relu", "softmax_with_loss", "layer_norm"]
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


def _jax_row(name: str, args, dout, repeat: int, rounds: int = 3) -> tuple[float, float]:
    """Best times of the generated ``custom_vjp`` and of ``jax.vjp`` of the composed forward,
    both under ``jit``, on arrays already on the device, in interleaved rounds (as the torch
    columns: a neighbour's load then falls on both alike)."""
    import jax

    f = symbackprop.compile(symbackprop.load(name), backend="jax")
    with jax.enable_x64(dout.dtype.itemsize == 8):  # float64 stays float64
        wrt = [jax.device_put(a.detach().numpy()) for a in args if a.requires_grad]
        constants = [jax.device_put(a.numpy()) for a in args if not a.requires_grad]
        d = jax.device_put(dout.numpy())
        generated = jax.jit(lambda d, *a: jax.vjp(lambda *b: f(*b, *constants), *a)[1](d))
        composed = jax.jit(lambda d, *a: jax.vjp(lambda *b: f.fwd(*b, *constants)[0], *a)[1](d))
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
    (gen_t, gen_b), (op_t, op_b), (comp_t, comp_b), *builtin = _timed(
        columns + ([BUILTIN[name]] if name in BUILTIN else []), arguments, dout, args.repeat)
    blt_t, blt_b = builtin[0] if builtin else (float("nan"), float("nan"))
    jax_ratio = float("nan")
    if not args.no_jax:
        jg, jc = _jax_row(name, arguments, dout, args.repeat)
        jax_ratio = jg / jc
    ms, mb = 1e3, 1e-6
    return [gen_t * ms, op_t * ms, comp_t * ms, blt_t * ms, gen_b * mb, op_b * mb, comp_b * mb, blt_b * mb,
            gen_t / comp_t, gen_t / blt_t, op_t / gen_t, jax_ratio]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--layers", nargs="*", default=LAYERS, choices=LAYERS)
    parser.add_argument("--threads", type=int, help="torch's intra-op threads (default: torch's own choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    print(f"forward + backward, {SIZE}x{SIZE} {args.dtype}, CPU ({torch.get_num_threads()} threads); "
          "time in ms, saved MB; ratios generated Function/composed, /built-in, custom op/Function, jax gen/comp")
    heads = ["gen ms", "op ms", "comp ms", "blt ms", "gen MB", "op MB", "comp MB", "blt MB",
             "t g/c", "t g/b", "op/gen", "jax g/c"]
    print(f"{'layer':<18}" + "".join(f"{h:>8}" for h in heads))
    for name in args.layers:
        print(f"{name:<18}" + "".join(f"{v:8.2f}" for v in _row(name, dtype, gen, args)), flush=True)


if __name__ == "__main__":
    main()
