"""The house rules of the source tree, checked on every run: packages import only packages
below them in the pipeline order (function-level imports included, so no cycles), and files
and functions stay short, except those listed (with the reason) in `OVERSIZE`, which is the
README's list too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rgbtad"

#: Lowest first: a package may import itself and the packages before it.
LAYERS = ("core", "config", "video", "motion", "backbones", "features", "data", "evaluation", "viz",
          "detection", "distill", "runs", "export", "inference", "training", "synthetic", "apps", "compat",
          "cli", "__main__")

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80

#: Files and functions over the limits, each with why; the same list is in the README.
OVERSIZE: dict[str, str] = {}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield rel, path.read_text()


def _layer(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_packages(rel: Path, tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the module's own package
                continue
            names = [node.module or ""]
            if node.module == "rgbtad":
                names = [f"rgbtad.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "rgbtad" and len(parts) > 1 and parts[1] != "__version__":
                yield node.lineno, parts[1]


def test_packages_import_only_packages_below_them():
    problems = []
    for rel, text in _modules():
        layer = _layer(rel)
        if layer == "__init__":
            continue
        assert layer in LAYERS, f"{rel}: package {layer!r} has no place in LAYERS"
        for line, target in _imported_packages(rel, ast.parse(text)):
            assert target in LAYERS, f"{rel}:{line}: imports unknown package {target!r}"
            if LAYERS.index(target) > LAYERS.index(layer):
                problems.append(f"{rel}:{line}: {layer} imports {target}, which lies above it")
    assert not problems, "\n".join(problems)


def _oversize():
    found = set()
    for rel, text in _modules():
        if text.count("\n") > MAX_FILE_LINES:
            found.add(str(rel))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    found.add(f"{rel}:{node.name}")
    return found


def test_files_and_functions_stay_short_or_are_listed():
    found = _oversize()
    assert not found - set(OVERSIZE), f"over the limits and not listed: {sorted(found - set(OVERSIZE))}"
    assert not set(OVERSIZE) - found, f"listed but now within the limits (remove them): {sorted(set(OVERSIZE) - found)}"


def test_every_listed_exception_is_in_the_readme():
    readme = (PACKAGE.parents[1] / "README.md").read_text()
    missing = [entry for entry in sorted(OVERSIZE) if f"`{entry}`" not in readme]
    assert not missing, f"README does not list {missing}"
