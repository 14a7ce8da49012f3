"""The command line: exit codes, one-line errors, JSON fields, nothing half-written."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from symbackprop.cli import main
from symbackprop.lang.parser import parse_expression


def run(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "symbackprop", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_derive_sigmoid_json(capsys):
    assert main(["derive", "sigmoid", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"name", "inputs", "outputs", "forward", "local", "backward", "cache"}
    assert data["cache"] == ["y"]
    back = parse_expression(data["backward"]["x"])
    assert {s.name for s in back.free_symbols} == {"dout", "y"}


def test_derive_expr_json(capsys):
    assert main(["derive", "--expr", "tanh(x)", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"] == ["x"] and data["cache"] == ["y"]


def test_derive_text_mentions_the_backward(capsys):
    assert main(["derive", "sigmoid"]) == 0
    out = capsys.readouterr().out
    assert "dx = dout*y*(1 - y)" in out and "cache     y" in out


@pytest.mark.parametrize("expr", [
    "__import__('os').system('touch pwned')", "x +", "foo(x)", "9**9**9", "().__class__", "x.real",
])
def test_hostile_or_malformed_expressions_exit_2_with_one_line(tmp_path, expr):
    start = time.perf_counter()
    result = run("derive", "--expr", expr, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert time.perf_counter() - start < 30


def test_bad_declaration_file_names_file_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "Bad"\ninputs = ["x"]\nforward = "exp(x) +"\n')
    assert main(["derive", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "forward" in err and "column" in err


@pytest.mark.parametrize("text, field", [
    ('name = "A"\ninputs = ["x"]\nforward = "foo(x)"\n', "forward"),
    ('name = "A"\ninputs = ["x"]\nforward = "x + z"\n', "forward"),
    ('name = "A"\ninputs = ["x"]\n', "forward"),
    ('name = "A"\ninputs = "x"\nforward = "x"\n', "inputs"),
    ('name = "A"\ninputs = ["x"]\nforward = "x"\nbogus = 1\n', "bogus"),
    ('name = "A"\ninputs = ["x"]\nforward = "x"\n[symbols]\nx = "happy"\n', "symbols.x"),
    ('name = "A"\ninputs = ["x"]\nforward = "x"\n[claims]\nbackward.z = "dout"\n', "claims.backward.z"),
    ('name = "A"\ninputs = [\n', "TOML"),
])
def test_malformed_declarations(tmp_path, capsys, text, field):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err


def test_unknown_spec_and_missing_file(capsys):
    assert main(["derive", "no_such_layer"]) == 2
    assert main(["derive", "missing.toml"]) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_generate_never_overwrites_without_force(tmp_path, capsys):
    out = tmp_path / "layers.py"
    out.write_text("mine")
    assert main(["generate", "sigmoid", "-o", str(out)]) == 2
    assert out.read_text() == "mine"
    assert main(["generate", "sigmoid", "-o", str(out), "--force"]) == 0
    assert "class Sigmoid" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers.py"]  # no temporary left behind


def test_generate_to_stdout(capsys):
    assert main(["generate", "relu"]) == 0
    assert "class Relu" in capsys.readouterr().out


def test_check_json_fields(capsys):
    assert main(["check", "apple_orange", "sigmoid", "--json", "--examples", "5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    for r in data["results"]:
        assert set(r) >= {"name", "ok", "backward_max_rel_error", "method", "claims", "chains", "seconds"}
    apple = data["results"][0]
    assert {e["of"]: e["generated"] for e in apple["expect"] if "generated" in e} == pytest.approx(
        {"price": 715, "grad.apple": 2.2, "grad.apple_num": 110, "grad.orange": 3.3, "grad.orange_num": 165,
         "grad.tax": 650})


def test_check_exits_1_when_something_fails(tmp_path, capsys):
    bad = tmp_path / "wrong.toml"
    bad.write_text('name = "W"\ninputs = ["x"]\nforward = "exp(x)"\n[claims]\nbackward.x = "dout * x"\n')
    assert main(["check", str(bad), "--examples", "3"]) == 1


def test_check_leaves_no_hypothesis_folder_in_the_working_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_STORAGE_DIRECTORY"}
    env["SYMBACKPROP_CACHE"] = str(tmp_path / "cache")
    work = tmp_path / "work"
    work.mkdir()
    result = run("check", "sigmoid", "--no-cache", "--examples", "5", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert list(work.iterdir()) == []


def test_python_dash_m_and_console_script_agree():
    result = run("--version")
    assert result.returncode == 0 and "symbackprop" in result.stdout


def test_the_default_output_name_never_clashes_with_an_input_or_dout(capsys):
    """`x*y + sin(x)`: the output is not called y (an input) nor out (its gradient would be dout)."""
    assert main(["derive", "--expr", "x*y + sin(x)", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "forward   z = " in out and "dout/d" not in out.replace("backward", "")
    assert main(["generate", "--expr", "out*2", "--no-cache"]) == 2
    assert "'out' cannot name an input or an intermediate: its gradient would be dout" in capsys.readouterr().err


def test_the_python_api_picks_a_free_output_name():
    import sympy

    import symbackprop

    x, y = sympy.symbols("x y", real=True)
    layer = symbackprop.layer(x * y + sympy.sin(x))
    assert layer.output.name == "z"
    backward = layer.derive().backward  # oracle: SymPy's diff of the forward
    dout = sympy.Symbol("dout", real=True)
    for s in (x, y):
        assert sympy.simplify(backward[s.name] - dout * sympy.diff(x * y + sympy.sin(x), s)) == 0


@pytest.mark.parametrize("args", [
    ["derive", "--expr", "exp(exp(exp(exp(exp(x)))))"],
    ["latex", "--expr", "exp(exp(exp(exp(exp(x)))))"],
])
def test_every_command_is_bounded_in_time(args, capsys):
    start = time.monotonic()
    code = main([*args, "--no-cache", "--time-limit", "3"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code in (0, 2) and elapsed < 20  # a result, or the one-line error, soon after the bound
    if code == 2:
        assert "did not finish within 3 s" in err and len(err.strip().splitlines()) == 1


def test_list_names_every_bundled_declaration_and_show_prints_its_file(capsys):
    from symbackprop.cli import main
    from symbackprop.spec import catalog

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == catalog.bundled_names()
    assert any(line.split()[:3] == ["sigmoid", "5.5.2", "elementwise"] for line in lines)
    assert main(["show", "sigmoid"]) == 0
    shown_text = capsys.readouterr().out
    assert shown_text == (catalog.bundled_dir() / "sigmoid.toml").read_text(encoding="utf-8")
    assert main(["show", "no_such_layer"]) == 2
    assert "no_such_layer" in capsys.readouterr().err


def test_a_bundled_declaration_is_shown_and_accepted_as_bundled_name(capsys):
    from symbackprop.cli import main

    assert main(["derive", "bundled:sigmoid"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "Sigmoid  (bundled:sigmoid)"
    assert main(["check", "--examples", "0", "sigmoid"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--examples" in err


def test_check_expands_a_quoted_glob_like_the_verify_commands(tmp_path, capsys):
    import shutil

    from symbackprop.cli import main
    from symbackprop.spec import catalog

    for name in ("relu", "sigmoid"):
        shutil.copy(catalog.bundled_dir() / f"{name}.toml", tmp_path / f"{name}.toml")
    assert main(["check", "--json", "--no-cache", str(tmp_path / "*.toml")]) == 0
    import json
    names = [r["name"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert names == ["Relu", "Sigmoid"]
    assert main(["check", str(tmp_path / "nothing*.toml")]) == 2
    assert "no file matches" in capsys.readouterr().err


APPLES = "examples/derivations/apples.toml"


@pytest.mark.parametrize("args, named", [
    (["check", "sigmoid", "--examples", "0"], "--examples"),
    (["check", "sigmoid", "--time-limit", "nan"], "--time-limit"),
    (["verify-steps", APPLES, "--timeout", "inf"], "--timeout"),
    (["verify-steps", APPLES, "--jobs", "0"], "--jobs"),
    (["verify-steps", APPLES, "--memory", "12Q"], "--memory"),
    (["verify-steps", APPLES, "--shard", "3/2"], "--shard"),
    (["verify-steps", APPLES, "--visibility", "hidden"], "--visibility"),          # not gradescope: ignored before
    (["verify-steps", APPLES, "--format", "gradescope", "--visibility", "sometimes"], "--visibility"),
    (["verify-steps", APPLES, "--scheduler", "tcp://127.0.0.1:1"], "--scheduler"),  # not dask: ignored before
    (["derive", "sigmoid", "--order", "9"], "--order"),
])
def test_every_option_is_validated_with_one_line_naming_it(args, named, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and named in err, err
