"""Which modules a function's code imports that nothing on ``sys.path`` provides.

``python`` mode runs this before it imports the handler, so a handler whose imports cannot be satisfied by the
runtime plus its requirements stops the replica at start with the missing modules named (the provider turns
that into the deploy's 422), instead of failing at the first request that reaches a lazy import.

Every ``.py`` file of the function's directory is read (not run). Imports of the function's own modules and
packages, relative imports, ``__future__``, and imports guarded by ``try: ... except ImportError`` (optional
dependencies) are not counted.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

_GUARDS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


def missing_modules(directory: Path) -> list[str]:
    """Top-level module names imported by the code under ``directory`` that cannot be found, sorted."""
    local = _local_names(directory)
    wanted: set[str] = set()
    for source in sorted(directory.rglob("*.py")):
        try:
            tree = ast.parse(source.read_bytes(), filename=str(source))
        except (SyntaxError, ValueError, OSError):
            continue  # the import itself reports it, with the line
        wanted.update(_imported(tree))
    candidates = sorted(wanted - local - {"__future__"} - set(sys.builtin_module_names))
    return [name for name in candidates if not _findable(name)]


def _local_names(directory: Path) -> set[str]:
    names = {directory.name, *(p.stem for p in directory.glob("*.py"))}
    names.update(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    return names


def _imported(tree: ast.AST) -> Iterator[str]:
    guarded = set(_guarded_nodes(tree))
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0]


def _guarded_nodes(tree: ast.AST) -> Iterator[int]:
    """Ids of the import nodes inside a ``try`` whose handlers catch ImportError (or broader)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for statement in node.body:
                for inner in ast.walk(statement):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        yield id(inner)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types: Iterable[ast.expr] = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in _GUARDS for t in types)


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
