"""pyfaasd.bundle: what `pyfaasd deploy PATH` uploads, and that a folder packs the same way every time."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from provider.code_store import CodeStore
from pyfaasd.bundle import BundleError, bundle_from_path, pack_directory


def make_function(directory: Path) -> Path:
    (directory / "lib").mkdir(parents=True)
    (directory / "handler.py").write_text("def handle(event, context):\n    return 'hi'\n")
    (directory / "lib" / "util.py").write_text("X = 1\n")
    (directory / "requirements.txt").write_text("")
    (directory / "__pycache__").mkdir()
    (directory / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\x00")
    (directory / ".git").mkdir()
    (directory / ".git" / "HEAD").write_text("ref: x\n")
    (directory / "run.sh").write_text("#!/bin/sh\n")
    (directory / "run.sh").chmod(0o700)
    return directory


def test_a_folder_is_packed_without_caches_or_hidden_files(tmp_path: Path) -> None:
    upload = bundle_from_path(make_function(tmp_path / "fn"))
    with tarfile.open(fileobj=io.BytesIO(upload.data), mode="r:gz") as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert sorted(members) == ["handler.py", "lib/util.py", "requirements.txt", "run.sh"]
    assert members["run.sh"].mode == 0o755
    assert members["handler.py"].mode == 0o644
    assert {m.mtime for m in members.values()} == {0}
    assert {m.uid for m in members.values()} == {0}


def test_the_same_folder_packs_to_the_same_bytes(tmp_path: Path) -> None:
    one = make_function(tmp_path / "one")
    first = pack_directory(one)
    os.utime(one / "handler.py", (1, 1))
    assert pack_directory(one) == first
    (one / "handler.py").write_text("changed\n")
    assert pack_directory(one) != first


def test_files_and_archives_go_as_they_are(tmp_path: Path) -> None:
    handler = tmp_path / "my_fn.py"
    handler.write_text("def run(x):\n    return x\n")
    assert bundle_from_path(handler).filename == "my_fn.py"
    assert bundle_from_path(handler).data == handler.read_bytes()
    archive = tmp_path / "fn.tgz"
    archive.write_bytes(pack_directory(make_function(tmp_path / "fn")))
    assert bundle_from_path(archive).data == archive.read_bytes()


@pytest.mark.parametrize("name", ["missing.py", "notes.txt"])
def test_what_cannot_be_deployed_is_named(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("x")
    with pytest.raises(BundleError, match=name):
        bundle_from_path(path)


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "__pycache__").mkdir(parents=True)
    with pytest.raises(BundleError, match="no files"):
        bundle_from_path(tmp_path / "empty")


def test_a_packed_folder_is_what_the_provider_stores(tmp_path: Path) -> None:
    upload = bundle_from_path(make_function(tmp_path / "fn"))
    bundle, created = CodeStore(tmp_path / "code").put(upload.data, upload.filename)
    assert created
    assert bundle.files == ("handler.py", "lib/util.py", "requirements.txt", "run.sh")
