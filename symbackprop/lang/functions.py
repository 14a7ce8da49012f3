"""The function table: one row per elementwise function, read by every stage.

A row says how a function is written in a declaration (its parser names), how it is
built in SymPy, how numpy and the fused kernels spell it, what it costs, and how it is
labelled in a graph.  The parser, the text printer, the numpy and fused printers, the
cost model, the float64 and mpmath evaluators and the explanation all look a function
up here, so a new function is one new row.

Two kinds of rows:

* a row with ``sympy`` set is a *node*: SymPy keeps it as one function application
  (``exp``, ``tanh``, ``Abs``), and every printer prints it from the row;
* a row without is *sugar*: the parser expands it into other nodes (``sigmoid(u)`` is
  ``1/(1 + exp(-u))``, ``relu(u)`` is ``Max(u, 0)``), so nothing downstream meets it.

``log1p``, ``expm1`` and ``softplus`` are both: sugar when parsed (``log1p(u)`` is
``log(1 + u)``, which SymPy differentiates and simplifies as usual) and nodes of their
own that the stable rewrites (:mod:`symbackprop.lang.stable`) introduce just before
printing or evaluating in float64.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy

from ..errors import SymbackpropError
from . import guards


class log1p(sympy.Function):  # noqa: N801 - named as numpy names it
    """``log(1 + u)``, printed as ``np.log1p``."""

    def fdiff(self, argindex=1):
        return 1 / (1 + self.args[0])


class expm1(sympy.Function):  # noqa: N801
    """``exp(u) - 1``, printed as ``np.expm1``."""

    def fdiff(self, argindex=1):
        return sympy.exp(self.args[0])


class softplus(sympy.Function):  # noqa: N801
    """``log(1 + exp(u))``, printed as ``np.logaddexp(0, u)``."""

    def fdiff(self, argindex=1):
        return 1 / (1 + sympy.exp(-self.args[0]))


class cbrt(sympy.Function):  # noqa: N801
    """The real cube root, negative for negative ``u`` (``np.cbrt``; SymPy's ``cbrt`` is the
    principal, complex one)."""

    is_real = True

    def fdiff(self, argindex=1):
        return 1 / (3 * cbrt(self.args[0]) ** 2)

    def _latex(self, printer, exp=None):
        root = rf"\sqrt[3]{{{printer._print(self.args[0])}}}"
        return root if exp is None else rf"\left({root}\right)^{{{exp}}}"


#: The prefix of a row's numpy spelling that means ``scipy.special`` (imported as ``special``).
SPECIAL = "special."
SCIPY_HINT = "pip install 'symbackprop[special]' (or scipy)"

#: Weighted cost of one call of a transcendental function, in multiplications.
TRANSCENDENTAL = 10


@dataclass(frozen=True)
class Function:
    r"""One row of the table.

    Attributes
    ----------
    names : tuple of str
        Spellings accepted by the parser; the first is the one printed back.
    arity : int
        Number of positional arguments in a declaration.
    build : callable or None
        From the parsed arguments to SymPy; default ``sympy(*args)``.
    sympy : type or None
        The SymPy class of the node (None for sugar).
    numpy : str or None
        The numpy function (``np.<numpy>``) that evaluates the node elementwise.
    numba : str or None
        The fused kernels' spelling of one element: ``_fused.exp_`` (the vectorizable
        implementations of :mod:`symbackprop.runtime.vecmath`), ``math.sinh``, ...
    mpmath : callable or None
        The function evaluated at high precision (mpmath numbers in, out).
    cost : int
        Weighted operation count of one call (a multiplication is 1).
    label : str or None
        The node's name in a computational graph (default the first name).
    kinds : str
        One letter per argument for the parser: ``e`` expression, ``c`` comparison,
        ``n`` plain name; empty means all expressions.
    domain : (float, float) or (float, float, bool) or None
        The open interval where the (last) argument must lie for the function to be real
        and differentiable (``log``: :math:`(0, \infty)`, ``arcsin``: :math:`(-1, 1)`),
        and whether 0 is excluded (``cbrt``); None: every real.
    """

    names: tuple[str, ...]
    arity: int = 1
    build: Callable[..., sympy.Basic] | None = None
    sympy: type | None = None
    numpy: str | None = None
    numba: str | None = None
    mpmath: Callable | None = None
    cost: int = TRANSCENDENTAL
    label: str | None = None
    kinds: str = ""
    domain: tuple | None = None

    @property
    def name(self) -> str:
        """The spelling printed back."""
        return self.names[0]

    def make(self, *args: sympy.Basic) -> sympy.Basic:
        """The SymPy expression of a call with these (built) arguments."""
        return self.build(*args) if self.build is not None else self.sympy(*args)

    @property
    def needs_scipy(self) -> bool:
        """Whether numpy lacks it and ``scipy.special`` evaluates it (``special.erf``)."""
        return (self.numpy or "").startswith(SPECIAL)

    def numpy_function(self) -> Callable | None:
        """The numpy (or scipy.special) function that evaluates the node elementwise."""
        if self.numpy is None:
            return NUMPY_EXTRA.get(self.name)
        if not self.needs_scipy:
            return getattr(np, self.numpy)
        try:
            from scipy import special  # an optional dependency: only these rows need it
        except ImportError:
            raise SymbackpropError(f"{self.name}() is evaluated by scipy.special: {SCIPY_HINT}") from None
        return getattr(special, self.numpy[len(SPECIAL):])


def _softplus_mp(u):
    return mpmath.log1p(mpmath.exp(u)) if u < 30 else u + mpmath.log1p(mpmath.exp(-u))


def _cbrt_mp(u):
    return mpmath.sign(u) * mpmath.cbrt(abs(u))


def _heaviside_mp(u, at_zero):
    return mpmath.mpf(1) if u > 0 else mpmath.mpf(0) if u < 0 else at_zero


def _real_mp(fn):
    """``fn`` where it is real; None (undefined) where mpmath gives a complex number."""
    def real(*args):
        value = fn(*args)
        return value if not isinstance(value, mpmath.mpc) else None
    real.__name__ = fn.__name__
    return real


def _node(names, sympy_class, numpy_name, numba=None, mp=None, cost=TRANSCENDENTAL, label=None, arity=1,
          domain=None):
    return Function(tuple(names), arity, None, sympy_class, numpy_name, numba, mp, cost, label, domain=domain)


_INF = float("inf")
POSITIVE, UNIT = (0.0, _INF), (-1.0, 1.0)
NONZERO = (-_INF, _INF, True)  # every real but 0, where the derivative is infinite


#: The rows whose calls SymPy keeps as nodes.
NODES: tuple[Function, ...] = (
    Function(("exp",), 1, guards.exp, sympy.exp, "exp", "_fused.exp_", mpmath.exp),
    _node(["log"], sympy.log, "log", "_fused.log_", mpmath.log, domain=POSITIVE),
    _node(["tanh"], sympy.tanh, "tanh", "_fused.tanh_", mpmath.tanh),
    _node(["sinh"], sympy.sinh, "sinh", "math.sinh", mpmath.sinh),
    _node(["cosh"], sympy.cosh, "cosh", "math.cosh", mpmath.cosh),
    _node(["sin"], sympy.sin, "sin", "math.sin", mpmath.sin),
    _node(["cos"], sympy.cos, "cos", "math.cos", mpmath.cos),
    _node(["tan"], sympy.tan, "tan", "math.tan", mpmath.tan),
    _node(["arctan", "atan"], sympy.atan, "arctan", "math.atan", mpmath.atan),
    _node(["arcsin", "asin"], sympy.asin, "arcsin", "math.asin", _real_mp(mpmath.asin), domain=UNIT),
    _node(["arccos", "acos"], sympy.acos, "arccos", "math.acos", _real_mp(mpmath.acos), domain=UNIT),
    _node(["arctan2", "atan2"], sympy.atan2, "arctan2", "math.atan2", mpmath.atan2, arity=2),
    _node(["arcsinh", "asinh"], sympy.asinh, "arcsinh", "math.asinh", mpmath.asinh),
    _node(["arccosh", "acosh"], sympy.acosh, "arccosh", "math.acosh", _real_mp(mpmath.acosh), domain=(1.0, _INF)),
    _node(["arctanh", "atanh"], sympy.atanh, "arctanh", "math.atanh", _real_mp(mpmath.atanh), domain=UNIT),
    _node(["cbrt"], cbrt, "cbrt", "np.cbrt", _cbrt_mp, domain=NONZERO),
    _node(["erf"], sympy.erf, "special.erf", "math.erf", mpmath.erf),
    _node(["erfc"], sympy.erfc, "special.erfc", "math.erfc", mpmath.erfc),
    _node(["erfinv"], sympy.erfinv, "special.erfinv", None, _real_mp(mpmath.erfinv), domain=UNIT),
    # gamma and its relatives are real between their poles too; sampled on x > 0, away from the poles
    _node(["gamma"], sympy.gamma, "special.gamma", "math.gamma", mpmath.gamma, domain=POSITIVE),
    _node(["lgamma", "gammaln", "loggamma"], sympy.loggamma, "special.gammaln", "math.lgamma",
          _real_mp(mpmath.loggamma), domain=POSITIVE),
    _node(["polygamma"], sympy.polygamma, "special.polygamma", None, mpmath.polygamma, arity=2, domain=POSITIVE),
    _node(["heaviside"], sympy.Heaviside, "heaviside", None, _heaviside_mp, cost=1, arity=2),
    _node(["abs"], sympy.Abs, "abs", "abs", abs, cost=1),
    _node(["sign"], sympy.sign, "sign", "np.sign", mpmath.sign, cost=1),
    _node(["log1p"], log1p, "log1p", "_fused.log1p_", mpmath.log1p, domain=(-1.0, _INF)),
    _node(["expm1"], expm1, "expm1", "_fused.expm1_", mpmath.expm1),
    _node(["softplus"], softplus, None, "_fused.softplus_", _softplus_mp),
)


def _sugar(names, build, arity=1, kinds=""):
    return Function(tuple(names), arity, build, kinds=kinds)


_HALF, _MINUS_ONE = sympy.S.Half, sympy.S.NegativeOne

#: The rows the parser expands into nodes (powers and exponentials built through the
#: guards of :mod:`symbackprop.lang.guards`, which refuse numbers too large to build).
SUGAR: tuple[Function, ...] = (
    _sugar(["sqrt"], lambda u: guards.power(u, _HALF)),
    _sugar(["log1p"], lambda u: sympy.log(1 + u)),
    _sugar(["expm1"], lambda u: guards.exp(u) - 1),
    _sugar(["sigmoid"], lambda u: guards.power(1 + guards.exp(-u), _MINUS_ONE)),
    _sugar(["softplus"], lambda u: sympy.log(1 + guards.exp(u))),
    _sugar(["relu"], lambda u: sympy.Max(u, 0)),
    _sugar(["maximum"], sympy.Max, 2),
    _sugar(["minimum"], sympy.Min, 2),
    _sugar(["where"], lambda c, a, b: sympy.Piecewise((a, c), (b, True)), 3, "cee"),
    _sugar(["heaviside"], lambda u: sympy.Heaviside(u, 0)),
    _sugar(["square"], lambda u: guards.power(u, sympy.Integer(2))),
    _sugar(["exp2"], lambda u: guards.power(sympy.Integer(2), u)),
    _sugar(["log2"], lambda u: sympy.log(u) / sympy.log(2)),
    _sugar(["log10"], lambda u: sympy.log(u) / sympy.log(10)),
    _sugar(["hypot"], lambda a, b: guards.power(a**2 + b**2, _HALF), 2),
    _sugar(["logit"], lambda u: sympy.log(u / (1 - u))),
    _sugar(["clip"], lambda u, lo, hi: sympy.Min(sympy.Max(u, lo), hi), 3),
    _sugar(["digamma", "psi"], lambda u: sympy.polygamma(0, u)),
)

#: Node rows by SymPy class.
BY_CLASS: dict[type, Function] = {row.sympy: row for row in NODES}

#: What a declaration may call, by name: sugar first, so that ``log1p(u)`` parses as ``log(1 + u)``.
BY_NAME: dict[str, Function] = {}
for _row in (*SUGAR, *NODES):
    for _n in _row.names:
        BY_NAME.setdefault(_n, _row)

#: Costs of the operators and functions that are not rows (the cost model's constants).
DIVISION_COST = 4
SQRT_COST = 5
GENERIC_COST = 20
OPERATOR_COST = {sympy.Max: 1, sympy.Min: 1}


def cost_of(func: type) -> int:
    """Weighted cost of one call of the SymPy function class ``func``."""
    row = BY_CLASS.get(func)
    if row is not None:
        return row.cost
    return OPERATOR_COST.get(func, GENERIC_COST)


def label_of(func: type) -> str:
    """The name of a node of class ``func`` in a computational graph."""
    row = BY_CLASS.get(func)
    if row is not None:
        return row.label or row.name
    return {sympy.Max: "max", sympy.Min: "min"}.get(func, func.__name__.lower())


#: numpy functions the float64 evaluator calls for nodes without a row of their own.
NUMPY_EXTRA = {"softplus": lambda u: np.logaddexp(0, u)}
