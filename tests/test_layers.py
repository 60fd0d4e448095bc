"""The package's layering (pyproject.toml's import-linter contracts) and its import
habits: imports at module top, except optional dependencies and the one costly
build-time import, each named here."""
import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "gantk"

#: the only modules imported inside functions: optional extras (scikit-learn, scipy,
#: POT, threadpoolctl), matplotlib (loaded on the first picture, after the Agg backend
#: is chosen), torch.utils.cpp_extension (1.5 s, only to build the extension) and
#: torch.utils.tensorboard (the optional "tensorboard" extra)
LAZY_OK = ("sklearn", "scipy", "ot", "threadpoolctl", "matplotlib", "torch.utils.cpp_extension",
           "torch.utils.tensorboard")


def _lint_imports() -> list[str] | None:
    exe = shutil.which("lint-imports")
    return [exe] if exe else None


def test_import_linter_contracts_hold():
    cmd = _lint_imports()
    if cmd is None:
        if os.environ.get("CI"):
            pytest.fail("import-linter is not installed (pip install -e '.[dev]')")
        pytest.skip("import-linter is not installed")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_a_wrong_import_breaks_the_contracts(tmp_path):
    """The check can fail: a copy of the package whose ops import training breaks it."""
    cmd = _lint_imports()
    if cmd is None:
        pytest.skip("import-linter is not installed")
    shutil.copytree(PKG, tmp_path / "gantk", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    penalty = tmp_path / "gantk" / "ops" / "penalty.py"
    penalty.write_text(penalty.read_text() + "\nfrom ..training import Trainer  # noqa: E402\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode != 0
    assert "gantk.ops is not allowed to import gantk.training" in res.stdout


def _function_imports():
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Import):
                        for a in sub.names:
                            yield path, sub.lineno, a.name
                    elif isinstance(sub, ast.ImportFrom):
                        yield path, sub.lineno, "." * sub.level + (sub.module or "")


def test_imports_sit_at_module_top_except_the_named_lazy_ones():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p, line, mod in _function_imports()
           if not any(mod == m or mod.startswith(m + ".") for m in LAZY_OK)]
    assert not bad, "\n".join(bad)


def test_errors_and_warnings_all_live_in_errors_py():
    from gantk import errors

    where = {}
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if bases & {"Exception", "UserWarning", "Warning", "GantkError", "UsageError", "RuntimeError",
                            "ValueError"} and path.name != "errors.py":
                    where[node.name] = str(path.relative_to(ROOT))
    assert not where, where
    assert issubclass(errors.GantkNote, UserWarning) and issubclass(errors.TrainingInterrupted, errors.GantkError)


def test_long_modules_say_why_at_the_top():
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 420:
            doc = ast.get_docstring(ast.parse(text)) or ""
            assert "longer" in doc or "long" in doc, f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines, no reason"


def test_the_package_imports_in_a_fresh_interpreter():
    # no import cycle at run time either: every module imports on its own
    mods = sorted({".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                   for p in PKG.rglob("*.py") if p.name != "__main__.py"})
    for mod in mods:
        res = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"{mod}: {res.stderr[-1500:]}"


def test_no_public_name_is_also_a_submodule():
    """gantk's public names load lazily; a submodule of the same name would shadow one
    once imported (``gantk.sample`` the function vs a module ``gantk/sample.py``)."""
    import gantk

    subs = {p.stem for p in PKG.glob("*.py")} | {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert not (set(gantk._PUBLIC) & subs)
    for name in gantk.__all__:
        assert getattr(gantk, name) is not None
