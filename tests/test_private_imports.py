"""A package's private modules (``_name``) are its own: other packages use its public surface
(its ``__init__`` or a module without a leading underscore, such as ``integration``).

The core's modules are public (``deerflow.core.history``, ``deerflow.core.state``, ...): it is the
kernel the runtime and the features build node kinds, folds and decisions on.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "deerflow"


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``tree``, function-level ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def private_imports_across_packages() -> list[str]:
    offences = []
    for path in sorted(ROOT.rglob("*.py")):
        own = path.relative_to(ROOT).parts[0].removesuffix(".py")
        for line, module in _imported(ast.parse(path.read_text(), str(path))):
            parts = module.split(".")
            if parts[0] != "deerflow" or len(parts) < 3:
                continue
            package, inner = parts[1], parts[2]
            if package != own and inner.startswith("_"):
                offences.append(f"{path.relative_to(ROOT.parent)}:{line}: {module}")
    return offences


def test_no_package_imports_another_package_s_private_modules():
    assert private_imports_across_packages() == []


def test_the_check_sees_a_private_import_inside_a_function():
    tree = ast.parse("def f():\n    from deerflow.runtime._engine import run_sync\n")
    assert (2, "deerflow.runtime._engine") in _imported(tree)
