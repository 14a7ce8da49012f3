"""The fused backend (numba kernels): the project's checks on every bundled declaration,
agreement with the numpy backend in float32 and float64, the parallel loops, the elementary
functions against mpmath, kept buffers, and the error without numba."""
import importlib.util
import os
import resource
import subprocess
import sys

import mpmath
import numba as nb
import numpy as np
import pytest

import symbackprop
from symbackprop.runtime import fused
from symbackprop.spec import catalog
from symbackprop.checker.base import dtype_tolerance
from symbackprop.pipeline import check as check_spec
from symbackprop.checker.arrays import ArrayProblem
from symbackprop.cli import main
from symbackprop.errors import GenerationError
from tests.fixtures.declarations import bundled
from symbackprop.numerics.domain import domain_of

from tests.fixtures.frameworks import REFUSED

#: index notation (convolution, pooling) is generated for numpy only so far (refused: test below)
NAMES = [n for n in catalog.bundled_names() if REFUSED.get(n) != "index notation"]


spec = bundled  # one spec per declaration for the whole session: derivations and kernels compile once


@pytest.mark.parametrize("name", NAMES)
def test_every_declaration_passes_the_checks_with_the_fused_backend(name):
    report = check_spec(spec(name), max_examples=5, backend="fused")
    assert report.ok, report.problems


@pytest.mark.parametrize("name", sorted(n for n, why in REFUSED.items() if why == "index notation"))
def test_index_notation_is_refused_with_one_line(name):
    with pytest.raises(GenerationError, match="does not generate index notation") as exc:
        symbackprop.generate(spec(name), backend="fused")
    assert "\n" not in str(exc.value)


def _values(name, dtype, sizes=None, seed=0):
    """(constructor args, forward args, dout) for one declaration, in ``dtype``."""
    s = spec(name)
    derivation = s.derive()
    rng = np.random.default_rng(seed)
    if s.is_array:
        problem = ArrayProblem(derivation, sizes or {d: 4 + i for i, d in enumerate(s.dims)}, seed)
        values = {k: v.astype(dtype) for k, v in problem.values.items()}
        dout = problem.dout.astype(dtype) if isinstance(problem.dout, np.ndarray) else problem.dout
        return [values[p] for p in s.params], [values[v] for v in (*s.inputs, *s.constants)], dout
    shape = sizes or (6, 7)
    xs = [domain_of(v).draw(rng, shape).astype(dtype) for v in s.inputs]
    return [], xs, rng.standard_normal(shape).astype(dtype)


def _run(cls, name, args, xs, dout):
    s = spec(name)
    layer = cls(*[a.copy() for a in args])
    out = layer.forward(*xs)
    grads = layer.backward(dout.copy() if isinstance(dout, np.ndarray) else dout)
    grads = grads if isinstance(grads, tuple) else (grads,)
    stored = [layer.grads[p.name] if s.predict is not None else getattr(layer, f"d{p.name}") for p in s.params]
    return [np.asarray(v) for v in (out, *grads, *stored)]


def _agree(got, want, dtype):
    tol = 1e-12 if dtype == np.float64 else dtype_tolerance(dtype)
    for g, w in zip(got, want):
        assert g.dtype == dtype, f"{dtype.__name__} in, {g.dtype} out"
        scale = max(float(np.max(np.abs(w.astype(float)), initial=0.0)), 1e-300)
        assert np.max(np.abs(g.astype(float) - w.astype(float)), initial=0.0) <= tol * scale


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NAMES)
def test_fused_outputs_and_gradients_equal_the_numpy_backend(name, dtype):
    derivation = spec(name).derive()
    args, xs, dout = _values(name, dtype)
    want = _run(symbackprop.compile(derivation), name, args, xs, dout)
    got = _run(symbackprop.compile(derivation, "fused"), name, args, xs, dout)
    if dtype == np.float32:  # the numpy backend's float32 against float64 on the same values
        _agree(want, _run(symbackprop.compile(derivation), name, [a.astype(float) for a in args],
                          [x.astype(float) for x in xs],
                          dout.astype(float) if isinstance(dout, np.ndarray) else dout), dtype)
    _agree(got, want, dtype)


@pytest.mark.parametrize("name", ["relu", "softmax_with_loss", "layer_norm"])
def test_the_parallel_loops_equal_the_numpy_backend(name, monkeypatch):
    monkeypatch.setattr(fused, "PARALLEL_MIN", 0)
    derivation = spec(name).derive()
    sizes = {d: 37 + 11 * i for i, d in enumerate(spec(name).dims)} if spec(name).is_array else (203, 61)
    args, xs, dout = _values(name, np.float64, sizes, seed=3)
    _agree(_run(symbackprop.compile(derivation, "fused"), name, args, xs, dout), _run(symbackprop.compile(derivation), name, args, xs, dout),
           np.float64)


# -- the elementary functions ------------------------------------------------------------------
def _apply(name: str, xs: np.ndarray) -> np.ndarray:
    """``fused.<name>`` at each of ``xs``, inside jitted code (where the fast forms live)."""
    fn = getattr(fused, name)

    @nb.njit
    def apply(values):
        out = np.empty_like(values)
        for i in range(values.size):
            out[i] = fn(values[i])
        return out
    return apply(xs)


REFERENCES = {"exp_": mpmath.exp, "expm1_": mpmath.expm1, "log_": mpmath.log, "log1p_": mpmath.log1p,
              "tanh_": mpmath.tanh, "softplus_": lambda u: mpmath.log1p(mpmath.exp(u))}
DOMAINS = {  # (dtype, function) -> the interval drawn from (log_: its exponents of 10)
    np.float64: {"exp_": (-745, 709), "expm1_": (-40, 709), "log_": (-300, 300), "log1p_": (-0.999, 1e6),
                 "tanh_": (-25, 25), "softplus_": (-745, 700)},
    np.float32: {"exp_": (-104, 88.7), "expm1_": (-20, 88.7), "log_": (-44, 38), "log1p_": (-0.999, 1e6),
                 "tanh_": (-12, 12), "softplus_": (-104, 88)}}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_elementary_functions_are_within_two_ulps_of_mpmath(name, dtype):
    rng = np.random.default_rng(7)
    low, high = DOMAINS[dtype][name]
    if name == "log_":
        xs = 10.0 ** rng.uniform(low, high, 3000)
    else:
        xs = np.concatenate([rng.uniform(low, high, 1500), rng.uniform(-1, 1, 1000) * 10.0 ** rng.uniform(-20, 0, 1000),
                             rng.uniform(max(low, -0.5), min(high, 0.5), 500)])
    xs = xs.astype(dtype)
    got = _apply(name, xs)
    assert got.dtype == dtype
    with mpmath.workdps(40):
        want = np.array([float(REFERENCES[name](mpmath.mpf(float(x)))) for x in xs]).astype(dtype)
    info = np.finfo(dtype)
    tiny = np.abs(want) < info.smallest_normal  # subnormal results: absolute, not relative, rounding
    ulps = np.abs(got - want) / np.spacing(np.abs(want))
    assert np.max(ulps[~tiny]) <= 2.0
    assert np.all(np.abs(got - want)[tiny] <= 2 * info.smallest_subnormal)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elementary_functions_at_special_values(dtype):
    tiniest = np.finfo(dtype).smallest_subnormal
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1000.0, -1000.0, tiniest], dtype=dtype)
    with np.errstate(all="ignore"):
        want = {"exp_": np.exp(specials), "expm1_": np.expm1(specials), "log_": np.log(specials),
                "log1p_": np.log1p(specials), "tanh_": np.tanh(specials), "softplus_": np.logaddexp(0, specials)}
    for name, values in want.items():
        got = _apply(name, specials)
        np.testing.assert_array_equal(got, values, err_msg=name)


# -- buffers, dtypes, complex values -----------------------------------------------------------
def test_a_result_the_caller_holds_is_never_overwritten():
    layer = spec("sigmoid").compile("fused")()
    x = np.linspace(-3, 3, 40000)
    first = layer.forward(x)
    saved = first.copy()
    second = layer.forward(-x)
    assert second is not first
    np.testing.assert_array_equal(first, saved)
    view = layer.backward(np.ones_like(x))[::2]  # a view keeps its base alive too
    layer.backward(np.zeros_like(x))
    assert np.all(view != 0)


def test_buffers_are_reused_when_released_so_repeated_calls_take_no_page_faults():
    layer = spec("tanh").compile("fused")()
    x, dout = np.random.default_rng(0).standard_normal((2, 150, 200))  # 240 kB each: not on the heap
    ids = set()
    for _ in range(3):
        ids.add(id(layer.forward(x)))
        layer.backward(dout)
    assert len(ids) == 1
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        layer.forward(x)
        layer.backward(dout)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20 < 5


def test_complex_values_run_the_numpy_code_and_other_dtypes_are_refused():
    derivation = spec("tanh").derive()
    z = np.array([0.3 + 1e-20j, -1.2 + 1e-20j])
    np.testing.assert_allclose(symbackprop.compile(derivation, "fused")().forward(z), symbackprop.compile(derivation)().forward(z), rtol=1e-15)
    with pytest.raises(TypeError, match="float32 or float64"):
        symbackprop.compile(derivation, "fused")().forward(np.ones(3, np.float16))
    assert symbackprop.compile(derivation, "fused")().forward(np.arange(3)).dtype == np.float64  # integers compute in float64


def test_scalars_in_scalars_out():
    layer = spec("apple_orange").compile("fused")()
    assert float(layer.forward(100.0, 2.0, 150.0, 3.0, 1.1)) == pytest.approx(715.0)
    assert [float(g) for g in layer.backward(1.0)] == pytest.approx([2.2, 110.0, 3.3, 165.0, 650.0])


# -- the command line and the optional dependency ----------------------------------------------
def test_generate_fused_writes_an_importable_module_with_cached_kernels(tmp_path, capsys):
    path = tmp_path / "fused_sigmoid.py"
    assert main(["generate", "sigmoid", "--backend", "fused", "-o", str(path)]) == 0
    module_spec = importlib.util.spec_from_file_location("fused_sigmoid", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    layer = module.Sigmoid()
    x = np.linspace(-4, 4, 9, dtype=np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), y * (1 - y), rtol=1e-6)
    assert list((tmp_path / "__pycache__").glob("fused_sigmoid*.nbi")), "numba caches the kernels of a file"


def test_check_with_the_fused_backend(capsys):
    assert main(["check", "relu", "--backend", "fused", "--examples", "3"]) == 0
    assert "1 of 1 declarations checked OK" in capsys.readouterr().out


def test_without_numba_the_fused_backend_says_how_to_install_it():
    code = ("import sys; sys.modules['numba'] = None\n"
            "from symbackprop.cli import main\n"
            "sys.exit(main(['generate', 'relu', '--backend', 'fused']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0
    assert "pip install '.[fast]'" in run.stderr
    default = subprocess.run([sys.executable, "-c", code.replace(", '--backend', 'fused'", "")],
                             capture_output=True, text=True, timeout=120)
    assert default.returncode == 0 and "class Relu" in default.stdout  # the numpy backend needs no numba


def test_a_kernel_takes_the_faster_of_its_serial_and_parallel_loops(monkeypatch):
    import time

    monkeypatch.setattr(fused, "PARALLEL_MIN", 10)
    kernel = fused.Kernel(lambda a: None)
    used = []
    kernel.serial = lambda a: used.append("serial")
    kernel.parallel = lambda a: (time.sleep(0.002), used.append("parallel"))  # a busy second core
    for _ in range(2 * kernel.RETRY):
        kernel(100, None)
    assert used[:4] == ["parallel", "serial", "parallel", "serial"]  # each compiled, then timed
    assert used[4:].count("parallel") == 2  # retried every RETRY calls, in case the cores are free again
    kernel(5, None)
    assert used[-1] == "serial"  # small arrays: always serial


def test_one_late_thread_does_not_make_a_kernel_give_up_its_parallel_loop(monkeypatch):
    import time

    monkeypatch.setattr(fused, "PARALLEL_MIN", 10)
    kernel = fused.Kernel(lambda a: None)
    used = []
    stalls = iter([0.0] * 6 + [0.02])  # the seventh parallel call waits 20 ms for a thread
    kernel.serial = lambda a: (time.sleep(0.002), used.append("serial"))
    kernel.parallel = lambda a: (time.sleep(next(stalls, 0.0)), used.append("parallel"))
    for _ in range(kernel.RETRY - 1):
        kernel(100, None)
    assert used[4:].count("serial") == 0  # the stall added to one call; the least of the last calls is unchanged


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_max_is_numpys_maximum(dtype):
    """The integer-ordered maximum against np.max on rows of mixed signs, magnitudes and infinities."""
    rng = np.random.default_rng(11)
    rows = rng.standard_normal((200, 37)) * 10.0 ** rng.integers(-300, 300, (200, 37))
    rows[::7, 3] = -np.inf
    rows[::11, 5] = np.inf
    rows[::13] = -np.abs(rows[::13])  # rows of negative numbers only
    rows[5] = -0.0
    with np.errstate(over="ignore"):  # float32: some entries overflow to inf or round to 0, as they should
        rows = rows.astype(dtype)

    @nb.njit
    def maxima(a):
        out = np.empty(a.shape[0])
        for i in range(a.shape[0]):
            out[i] = fused.row_max(a[i], a.shape[1])
        return out
    np.testing.assert_array_equal(maxima(rows), rows.max(axis=1).astype(np.float64))
    assert maxima(np.empty((1, 0))) == -np.inf


def test_a_second_process_loads_the_in_memory_classes_kernels_from_numbas_disk_cache(tmp_path):
    # the oracle is numba's own bookkeeping (cache hits and misses of each dispatcher)
    code = ("import numpy as np, symbackprop\n"
            "cls = symbackprop.compile(symbackprop.load('sigmoid'), backend='fused')\n"
            "layer = cls(); x = np.linspace(-5, 5, 50_000)\n"
            "y = layer.forward(x); dx = layer.backward(np.ones_like(x))\n"
            "k = cls.forward.__globals__['_forward']\n"
            "ce = symbackprop.compile(symbackprop.load('cross_entropy'), backend='fused')()\n"
            "loss = ce.forward(np.full((4, 3), 0.5), np.eye(3)[[0, 1, 2, 0]])\n"  # a row loop with scratch
            "print(sum(k.serial.stats.cache_hits.values()), sum(k.serial.stats.cache_misses.values()), "
            "float(dx.sum()) + loss)\n")
    env = {**os.environ, "SYMBACKPROP_CACHE": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    (hits1, misses1, sum1), (hits2, misses2, sum2) = ([float(v) for v in r.stdout.split()] for r in runs)
    assert (hits1, misses1) == (0, 1) and (hits2, misses2) == (1, 0)
    assert sum1 == sum2  # and the second process did not crash in a loop loaded from the cache (SIGSEGV once)
    kernels = list((tmp_path / "kernels").glob("k*.py"))
    assert kernels and all(p.read_text().startswith('"""Generated by symbackprop') for p in kernels)


def test_the_serial_and_parallel_loops_of_one_kernel_have_caches_of_their_own(tmp_path):
    source = tmp_path / "double.py"
    source.write_text("import numba as nb\ndef double(a, out):\n    for i in nb.prange(a.shape[0]):\n"
                      "        out[i] = 2.0 * a[i]\n")
    spec_ = importlib.util.spec_from_file_location("double", source)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    kernel = fused.Kernel(module.double)
    a, out = np.ones(10), np.empty(10)
    kernel.serial(a, out), kernel.parallel(a, out)
    names = sorted(p.name.split("-")[0] for p in (tmp_path / "__pycache__").glob("*.nbi"))
    assert names == ["double.double__parallel", "double.double__serial"]
