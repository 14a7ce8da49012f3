"""The generated torch op against autograd of the composed forward and PyTorch's built-in.

For each layer at 1000x1000 on the CPU: forward + backward time (best of ``repeat``) and the
bytes autograd saves for the backward (``torch.autograd.graph.saved_tensors_hooks``), of
(a) the generated ``autograd.Function``, (b) the same forward composed from torch
operations (the generated forward run as plain operations, differentiated by autograd),
(c) the built-in where PyTorch has one; and for jax the generated ``custom_vjp`` against
``jax.grad`` of the composed forward, both under ``jit``.  Ratios are of one run.

    python -m benchmarks.frameworks [--dtype float32] [--repeat 5]
"""
from __future__ import annotations

import argparse
import time

import torch

import symbackprop

BUILTIN = {
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "swish": torch.nn.functional.silu,
    "gelu": lambda x: torch.nn.functional.gelu(x, approximate="tanh"), "softplus": torch.nn.functional.softplus,
}
LAYERS = ["sigmoid", "tanh", "swish", "gelu", "softplus", "relu"]


class _Ctx:
    def save_for_backward(self, *tensors):
        self.saved = tensors


def _saved_bytes(fn) -> int:
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def _timed(fn, x, dout, repeat: int) -> tuple[float, int]:
    def step():
        x.grad = None
        fn(x).backward(dout)

    step()
    best = min(_once(step) for _ in range(repeat))
    return best, _saved_bytes(lambda: fn(x))


def _once(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _jax_row(name: str, x, dout, repeat: int) -> tuple[float, float]:
    import jax

    f = symbackprop.compile(symbackprop.load(name), backend="jax")
    generated = jax.jit(lambda a, d: jax.vjp(f, a)[1](d))
    composed = jax.jit(lambda a, d: jax.vjp(lambda b: f.fwd(b)[0], a)[1](d))
    out = []
    with jax.enable_x64(x.dtype.itemsize == 8):  # float64 stays float64
        for fn in (generated, composed):
            jax.block_until_ready(fn(x, dout))
            out.append(min(_once(lambda: jax.block_until_ready(fn(x, dout))) for _ in range(repeat)))
    return out[0], out[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-jax", action="store_true")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 1000, dtype=dtype, generator=gen).requires_grad_()
    dout = torch.randn(1000, 1000, dtype=dtype, generator=gen)
    print(f"forward + backward, 1000x1000 {args.dtype}, CPU ({torch.get_num_threads()} threads); "
          "time in ms, saved MB; ratios generated/composed, generated/built-in")
    print(f"{'layer':<10} {'gen ms':>7} {'comp ms':>7} {'blt ms':>7} {'gen MB':>7} {'comp MB':>7} {'blt MB':>7}"
          f" {'t g/c':>6} {'t g/b':>6} {'jax g/c':>7}")
    for name in LAYERS:
        function = symbackprop.compile(symbackprop.load(name), backend="torch").function
        gen_t, gen_b = _timed(function.apply, x, dout, args.repeat)
        comp_t, comp_b = _timed(lambda a: function.forward(_Ctx(), a), x, dout, args.repeat)
        blt_t, blt_b = _timed(BUILTIN[name], x, dout, args.repeat) if name in BUILTIN else (float("nan"), 0)
        jax_ratio = float("nan")
        if not args.no_jax:
            jg, jc = _jax_row(name, x.detach().numpy(), dout.numpy(), args.repeat)
            jax_ratio = jg / jc
        mb = 1e-6
        blt = f"{blt_t * 1e3:7.1f} " if name in BUILTIN else f"{'-':>7} "
        print(f"{name:<10} {gen_t * 1e3:7.1f} {comp_t * 1e3:7.1f} {blt}{gen_b * mb:7.1f} {comp_b * mb:7.1f} "
              f"{(blt_b * mb if name in BUILTIN else float('nan')):7.1f} {gen_t / comp_t:6.2f} "
              f"{gen_t / blt_t:6.2f} {jax_ratio:7.2f}")


if __name__ == "__main__":
    main()
