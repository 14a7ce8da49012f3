"""Functions a generated torch module defines for itself where torch's CPU kernel is slow.

torch's CPU ``mish`` and ``mish_backward`` each compute ``tanh``, ``log1p`` and ``exp``
(and the backward a sigmoid) for every element; the same values follow from one ``exp``:

.. math:: \\tanh(\\log(1 + e)) = \\frac{n}{n + 2}, \\quad n = e(e + 2), \\quad e = \\exp x

.. math:: \\frac{d}{dx}\\,x\\tanh(\\log(1 + e^x)) = t + x\\sigma(x)(1 - t^2)
          = \\frac{1}{n + 2}\\Big(n + \\frac{4xe(e + 1)}{n + 2}\\Big)

(:math:`1 - t^2 = 4(n + 1)/(n + 2)^2` and :math:`n + 1 = (e + 1)^2`), which on 10^6
elements takes about half the forward's time and 0.7x the backward's (``benchmarks/
frameworks.py``).  Neither form subtracts nearby numbers where ``x`` is very negative
(``n`` is computed as ``e(e + 1) + e``, not ``(e + 1)^2 - 1``), and ``x`` is clamped at 40,
where the ratio is 1 and the derivative 1 in float32 and float64 alike while
:math:`4xe(e + 1)` stays finite in float32.

Each function takes torch's kernel on other devices and dtypes (a GPU runs the fused
kernel in one pass, where these are several) and, for the forward, wherever autograd
records (the in-place steps would break its graph).  The printer calls them by name;
:func:`definitions` gives the module the ones its code calls.
"""
from __future__ import annotations

import re

#: The module-level functions, by name: their source lines.
HELPERS: dict[str, list[str]] = {
    "mish_forward": [
        "def mish_forward(x):",
        '    """F.mish(x); on the CPU in float32 and float64 from one exp where autograd records nothing:',
        "    x*tanh(log(1 + e)) = x*n/(n + 2) with n = e*(e + 2), e = exp(min(x, 40)).\"\"\"",
        "    if x.device.type != \"cpu\" or x.dtype not in (torch.float32, torch.float64) \\",
        "            or torch.is_grad_enabled() and x.requires_grad:",
        "        return torch.nn.functional.mish(x)",
        "    e = torch.clamp_max(x, 40).exp_()",
        "    n = torch.addcmul(e, e, e).add_(e)",
        "    return n.div_(torch.add(n, 2, out=e)).mul_(x)",
    ],
    "mish_backward": [
        "def mish_backward(dout, x):",
        '    """torch.ops.aten.mish_backward(dout, x), where autograd records nothing; on the CPU in float32',
        "    and float64 from one exp: dout*(n + 4*x*e*(e + 1)/(n + 2))/(n + 2), n and e as in mish_forward.\"\"\"",
        "    if x.device.type != \"cpu\" or x.dtype not in (torch.float32, torch.float64):",
        "        return torch.ops.aten.mish_backward(dout, x)",
        "    x = torch.clamp_max(x, 40)",
        "    e = torch.exp(x)",
        "    p = torch.addcmul(e, e, e)  # e*(e + 1)",
        "    n = e.add_(p)",
        "    d = n + 2",
        "    return n.addcdiv_(p.mul_(x), d, value=4).div_(d).mul_(dout)",
    ],
}


def definitions(lines: list[str]) -> list[str]:
    """The source of the :data:`HELPERS` that ``lines`` call (their names are reserved, so
    a call is theirs), each followed by two blank lines."""
    text = "\n".join(lines)
    out = []
    for name, source in HELPERS.items():
        if re.search(rf"(?<![\w.]){name}\(", text):
            out += [*source, "", ""]
    return out


__all__ = ["HELPERS", "definitions"]
