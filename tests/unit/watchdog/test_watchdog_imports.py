"""watchdog.imports: a handler's imports that nothing provides are named before the handler runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from watchdog.config import WatchdogConfig
from watchdog.errors import StartupError
from watchdog.executor.python import load_handler
from watchdog.imports import missing_modules


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def test_stdlib_runtime_and_own_modules_are_found(tmp_path: Path) -> None:
    fn = write(
        tmp_path / "fn",
        {
            "handler.py": "import json, os.path\nimport structlog\nfrom helpers import x\nfrom lib.sub import y\n"
            "from . import rel\n",
            "helpers.py": "x = 1\n",
            "lib/__init__.py": "",
            "lib/sub.py": "import collections\ny = 2\n",
        },
    )
    assert missing_modules(fn) == []


def test_missing_modules_are_named_once_and_sorted_wherever_they_are_imported(tmp_path: Path) -> None:
    fn = write(
        tmp_path / "fn",
        {
            "handler.py": "import zz_not_there\nfrom aa_absent.sub import thing\n\n"
            "def handle(event, context):\n    import mm_lazy\n    return mm_lazy.x\n",
            "lib/util.py": "import zz_not_there\n",
        },
    )
    assert missing_modules(fn) == ["aa_absent", "mm_lazy", "zz_not_there"]


def test_imports_guarded_by_import_error_are_optional(tmp_path: Path) -> None:
    fn = write(
        tmp_path / "fn",
        {
            "handler.py": "try:\n    import ujson_absent as json\nexcept ImportError:\n    import json\n"
            "try:\n    import nope_absent\nexcept (ModuleNotFoundError, OSError):\n    nope_absent = None\n"
            "try:\n    import counted_absent\nexcept KeyError:\n    pass\n",
        },
    )
    assert missing_modules(fn) == ["counted_absent"]


def test_a_file_that_does_not_parse_is_left_to_the_import_to_report(tmp_path: Path) -> None:
    fn = write(tmp_path / "fn", {"handler.py": "import json\n", "broken.py": "def (:\n"})
    assert missing_modules(fn) == []


def test_load_handler_refuses_missing_modules_before_importing(tmp_path: Path) -> None:
    fn = write(
        tmp_path / "fn",
        {"handler.py": "import sys\nsys.modules['side_effect_ran'] = sys\nimport qq_missing\ndef handle(e, c): pass\n"},
    )
    config = WatchdogConfig.from_env({"mode": "python", "function_path": str(fn)})
    with pytest.raises(StartupError, match=r"not installed: qq_missing \(add them to requirements\.txt\)"):
        load_handler(config)
    assert "side_effect_ran" not in sys.modules
