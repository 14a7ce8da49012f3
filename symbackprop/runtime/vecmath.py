r"""Elementary functions that LLVM can vectorize, for the kernels of the fused backend.

numba compiles ``math.exp`` and ``np.exp`` inside a loop to a call of the C library, one
element at a time; these polynomial forms inline into the loop and run on every SIMD lane.
Each function is one name with two implementations, chosen by the argument's type when a
kernel is compiled: float32 arguments get float32 arithmetic (twice the lanes of float64 and
shorter polynomials), anything else float64.

=============  ==========================================================  ==================
function       float64                                                      float32
=============  ==========================================================  ==================
``exp_``       :math:`x = k\ln 2 + r`, :math:`e^r` by Taylor to :math:`r^{13}`  Taylor to :math:`r^7`
``expm1_``     :math:`2^k \operatorname{expm1}(r) + (2^k - 1)`, no cancellation  the same
``tanh_``      :math:`\operatorname{sign}(x)\, e/(e + 2)`, :math:`e = \operatorname{expm1}(2|x|)`  the same
``log_``       fdlibm: :math:`\log(1+f) = f - f^2/2 + s(f^2/2 + R(s^2))`        float64, rounded
``log1p_``     :math:`\log m + (u - (m - 1))/m`, :math:`m = 1 + u`            float64, rounded
``softplus_``  :math:`\max(x, 0) + \operatorname{log1p}(e^{-|x|})`             float64, rounded
=============  ==========================================================  ==================

All are within 2 units in the last place of mpmath (``tests/test_fused.py``), with numpy's
values at 0, +-0, +-inf, nan and in the subnormal range.  The only fast-math flag is
``contract`` (fused multiply-adds: one rounding instead of two), except in :func:`row_sum`.
"""
from __future__ import annotations

import numpy as np

try:  # the optional dependency: pip install '.[fast]'
    import numba as nb
    from llvmlite import ir as _ir
    from numba import types as _types
    from numba.extending import intrinsic as _intrinsic
    from numba.extending import overload as _overload
except ImportError:  # pragma: no cover - tested in a subprocess that hides numba
    nb = None

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: float32 Cody-Waite split of ln 2: k*_LN2_HI32 is exact for |k| < 256 (16 bits of mantissa).
_LN2_HI32 = 0.693145751953125
_LN2_LO32 = 1.4286068203094172e-06
_SQRT2 = 1.4142135623730951
#: fdlibm's log: log(1 + f) = f - f**2/2 + s*(f**2/2 + R(s**2)), s = f/(2 + f)
_LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
       2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
       1.479819860511658591e-01)

#: The only fast-math flag of the functions: fused multiply-adds, never less accurate.
CONTRACT = {"contract"}
F32 = np.float32

if nb is not None:
    _inline = nb.njit(error_model="numpy", cache=True, inline="always", fastmath=CONTRACT)

    @_intrinsic
    def _as_float(typingctx, bits):
        """The float whose bits are ``bits``: float64 from int64, float32 from int32 (a register move)."""
        wide = bits.bitwidth == 64
        result = _types.float64 if wide else _types.float32

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _ir.DoubleType() if wide else _ir.FloatType())
        return result(bits), codegen

    @_intrinsic
    def _as_bits(typingctx, value):
        """The int64 bits of the float64 ``value``."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _ir.IntType(64))
        return _types.int64(_types.float64), codegen

    # -- float64 --------------------------------------------------------------------------------
    @_inline
    def _expm1_small(r):
        """exp(r) - 1 for |r| <= ln(2)/2, by its Taylor series (no cancellation)."""
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        return p * r * r + r

    @_inline
    def _exp64(x):
        """exp(x) to about 1 ulp: x = k*ln2 + r, exp(r) by its Taylor series, 2**k from bits
        (in two halves, so that subnormal results come out right); inf and 0 at the ends."""
        x = np.float64(x)
        c = min(max(x, -746.0), 710.0)
        k = np.floor(c * _LOG2E + 0.5)
        r = (c - k * _LN2_HI) - k * _LN2_LO
        ki = np.int64(k)
        k1 = ki >> 1
        scale = _as_float((k1 + 1023) << 52) * _as_float((ki - k1 + 1023) << 52)
        return (_expm1_small(r) + 1.0) * scale if x == x else x

    @_inline
    def _expm1_bounded(x):
        """exp(x) - 1 for |x| <= 45 without cancellation (clamped there)."""
        return _expm1_within(min(max(x, -45.0), 45.0))

    @_inline
    def _expm1_within(c):
        """exp(c) - 1 for |c| <= 45: c = k*ln2 + r, 2**k*expm1(r) + (2**k - 1) (k = 0 and r = c
        near 0)."""
        k = np.floor(c * _LOG2E + 0.5)
        r = (c - k * _LN2_HI) - k * _LN2_LO
        scale = _as_float((np.int64(k) + 1023) << 52)
        return scale * _expm1_small(r) + (scale - 1.0)

    @_inline
    def _expm1_64(x):
        """exp(x) - 1 without cancellation near 0 (both forms computed, one selected: SIMD)."""
        x = np.float64(x)
        bounded = _expm1_bounded(x)
        large = _exp64(x) - 1.0
        return bounded if abs(x) <= 45.0 else large

    @_inline
    def _log64(x):
        """log(x) to about 1 ulp (fdlibm's method); -inf at 0, nan below, subnormals scaled."""
        x = np.float64(x)
        tiny = x < 2.2250738585072014e-308
        y = x * 18014398509481984.0 if tiny else x  # 2**54
        bits = _as_bits(y)
        e = ((bits >> 52) & 0x7FF) - 1023 - (54 if tiny else 0)
        m = _as_float((bits & 0xFFFFFFFFFFFFF) | (1023 << 52))
        big = m > _SQRT2
        m = m * 0.5 if big else m
        k = np.float64(e + 1 if big else e)
        f = m - 1.0
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        t1 = w * (_LG[1] + w * (_LG[3] + w * _LG[5]))
        t2 = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6])))
        hfsq = 0.5 * f * f
        value = k * _LN2_HI - ((hfsq - (s * (hfsq + t1 + t2) + k * _LN2_LO)) - f)
        value = -np.inf if x == 0.0 else value
        value = np.nan if x < 0.0 else value
        return x if (x == np.inf) | (x != x) else value

    @_inline
    def _log1p64(u):
        """log(1 + u), accurate near 0: log(m) corrected by the rounding of m = 1 + u."""
        u = np.float64(u)
        m = 1.0 + u
        plain = _log64(m)
        corrected = plain + (u - (m - 1.0)) / m
        return plain if (m == 0.0) | (m == np.inf) else corrected

    @_inline
    def _tanh64(x):
        """tanh(x) = expm1(2|x|)/(expm1(2|x|) + 2) with the sign of x; +-1 beyond |x| = 20."""
        x = np.float64(x)
        a = min(abs(x), 20.0)
        e = _expm1_within(2.0 * a)
        t = e / (e + 2.0)
        return -t if x < 0 else (t if x == x else x)

    @_inline
    def _softplus64(x):
        """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): np.logaddexp(0, x)."""
        x = np.float64(x)
        return max(x, 0.0) + _log1p64(_exp64(-abs(x))) if x == x else x

    # -- float32 --------------------------------------------------------------------------------
    @_inline
    def _expm1_small32(r):
        """exp(r) - 1 for |r| <= ln(2)/2 in float32 (Taylor to r**7/7!: the rest is below 1e-8)."""
        p = F32(1.0 / 5040.0)
        p = p * r + F32(1.0 / 720.0)
        p = p * r + F32(1.0 / 120.0)
        p = p * r + F32(1.0 / 24.0)
        p = p * r + F32(1.0 / 6.0)
        p = p * r + F32(0.5)
        return p * r * r + r

    @_inline
    def _reduce32(c):
        """c = k*ln2 + r with |r| <= ln(2)/2: (k, r) in float32."""
        k = np.floor(c * F32(_LOG2E) + F32(0.5))
        return k, (c - k * F32(_LN2_HI32)) - k * F32(_LN2_LO32)

    @_inline
    def _exp32(x):
        """exp(x) in float32; 2**k in two halves, applied one after the other (subnormals)."""
        k, r = _reduce32(min(max(x, F32(-104.0)), F32(89.0)))
        ki = np.int32(k)
        k1 = ki >> 1
        value = (_expm1_small32(r) + F32(1.0)) * _as_float(np.int32((k1 + 127) << 23))
        return value * _as_float(np.int32((ki - k1 + 127) << 23)) if x == x else x

    @_inline
    def _expm1_bounded32(x):
        """exp(x) - 1 for |x| <= 20 in float32 without cancellation (clamped there)."""
        return _expm1_within32(min(max(x, F32(-20.0)), F32(20.0)))

    @_inline
    def _expm1_within32(c):
        """exp(c) - 1 for |c| <= 20 in float32."""
        k, r = _reduce32(c)
        scale = _as_float(np.int32((np.int32(k) + 127) << 23))
        return scale * _expm1_small32(r) + (scale - F32(1.0))

    @_inline
    def _expm1_32(x):
        """exp(x) - 1 in float32 (beyond |x| = 20, exp(x) - 1 loses nothing)."""
        bounded = _expm1_bounded32(x)
        large = _exp32(x) - F32(1.0)
        return bounded if abs(x) <= F32(20.0) else large

    @_inline
    def _tanh32(x):
        """tanh(x) in float32: expm1(2|x|)/(expm1(2|x|) + 2), +-1 beyond |x| = 9."""
        a = min(abs(x), F32(9.0))
        e = _expm1_within32(F32(2.0) * a)
        t = e / (e + F32(2.0))
        return -t if x < 0 else (t if x == x else x)

    @_inline
    def _log32(x):
        return F32(_log64(x))

    @_inline
    def _log1p32(x):
        return F32(_log1p64(x))

    @_inline
    def _softplus32(x):
        return F32(_softplus64(x))

    # -- one name, two implementations ----------------------------------------------------------
    def _by_type(name: str, wide, narrow, doc: str):
        """A function of jitted code: ``narrow`` for a float32 argument, ``wide`` for any other.
        Called from Python, it runs ``wide``."""
        def function(x):
            return wide(x)
        function.__name__ = function.__qualname__ = name
        function.__doc__ = doc

        @_overload(function, jit_options={"fastmath": CONTRACT, "error_model": "numpy"})
        def _typed(x):
            if x == _types.float32:
                return lambda x: narrow(x)
            return lambda x: wide(x)
        return function

    exp_ = _by_type("exp_", _exp64, _exp32, "exp(x), about 1 ulp.")
    expm1_ = _by_type("expm1_", _expm1_64, _expm1_32, "exp(x) - 1 without cancellation near 0.")
    log_ = _by_type("log_", _log64, _log32, "log(x): -inf at 0, nan below 0.")
    log1p_ = _by_type("log1p_", _log1p64, _log1p32, "log(1 + u), accurate near 0.")
    tanh_ = _by_type("tanh_", _tanh64, _tanh32, "tanh(x).")
    softplus_ = _by_type("softplus_", _softplus64, _softplus32, "log(1 + exp(x)), as np.logaddexp(0, x).")

    # -- reductions over a work row, and numpy's nan-propagating maximum and minimum ------------
    @nb.njit(error_model="numpy", cache=True, fastmath={"reassoc", "contract"})
    def row_sum(w, n):
        """w[0] + ... + w[n-1], reassociated as numpy's pairwise sum is (so LLVM uses SIMD)."""
        total = 0.0
        for j in range(n):
            total += w[j]
        return total

    @_inline
    def _ordered(bits):
        """Float bits to an int64 in the floats' order (negative floats' magnitude bits flipped);
        its own inverse."""
        return bits ^ ((bits >> 63) & 0x7FFFFFFFFFFFFFFF)

    @nb.njit(error_model="numpy", cache=True)
    def row_max(w, n):
        """max(w[0], ..., w[n-1]), -inf for none: the largest of the floats' ordered bits, an
        integer maximum that LLVM vectorizes (a float one, it does not: 5 times slower).  A nan
        with its sign bit clear is the maximum; any nan reaches the results through the sums."""
        top = np.int64(-9218868437227405313)  # -inf, ordered
        for j in range(n):
            b = _ordered(_as_bits(np.float64(w[j])))
            top = b if b > top else top
        return _as_float(_ordered(top))

    @_inline
    def maximum_(a, b):
        """np.maximum: nan if either is nan."""
        return a if (a > b or a != a) else b

    @_inline
    def minimum_(a, b):
        """np.minimum: nan if either is nan."""
        return a if (a < b or a != a) else b
