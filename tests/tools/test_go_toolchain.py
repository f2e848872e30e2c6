"""tools/go_toolchain.py: which Go the test command uses, and the checked download."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tools._load import TOOLS, load_tool

gt = load_tool("go_toolchain")
GO_MOD = TOOLS.parent / "go_worker" / "go.mod"


def fake_go(directory: Path, version: str) -> Path:
    """A ``go`` program that only answers ``go version``, like a real one of *version*."""
    directory.mkdir(parents=True, exist_ok=True)
    go = directory / "go"
    go.write_text(f'#!/bin/sh\necho "go version go{version} linux/amd64"\n')
    go.chmod(0o755)
    return go


def module_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.19.8", "1.22"),
        ("1.22rc1", "1.22"),
        ("go1.22beta1", "go1.22rc1"),
        ("1.22", "1.22.12"),
        ("1.9", "1.22"),
    ],
)
def test_versions_order_as_go_releases_do(older: str, newer: str) -> None:
    assert gt.GoVersion.parse(older) < gt.GoVersion.parse(newer)


def test_a_version_without_patch_is_patch_zero() -> None:
    assert gt.GoVersion.parse("go1.22") == gt.GoVersion.parse("1.22.0")


def test_not_a_version_is_refused() -> None:
    with pytest.raises(gt.ToolchainError, match="not a Go version"):
        gt.GoVersion.parse("latest")


def test_the_pinned_toolchain_builds_the_worker() -> None:
    # If go.mod moves past the pin, a machine with only Debian's Go cannot run the checks.
    assert gt.GoVersion.parse(gt.PINNED) >= gt.required_version(GO_MOD)


def test_go_mod_without_go_line_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.com/x\n")
    with pytest.raises(gt.ToolchainError, match="no 'go' line"):
        gt.required_version(tmp_path / "go.mod")


def test_dirhash_matches_the_checksum_database() -> None:
    # The database's published hash of golang.org/toolchain@v0.0.1-go1.22.12.linux-amd64/go.mod,
    # which is the h1 hash of one file named go.mod holding this line.
    archive = zipfile.ZipFile(io.BytesIO(module_zip({"go.mod": b"module golang.org/toolchain\n"})))
    assert gt.dirhash_h1(archive) == "h1:8wlg68NqwW7eMnI1aABk/C2pDYXj8mrMY4TyRfiLeS0="


def test_a_go_new_enough_on_path_is_used(tmp_path: Path) -> None:
    go = fake_go(tmp_path / "new", "1.26.1")
    assert gt.ensure_go(GO_MOD, tmp_path / "cache", [str(go)]) == go.parent


def test_too_old_or_absent_go_falls_back_to_the_cached_pinned_one(tmp_path: Path) -> None:
    old = fake_go(tmp_path / "old", "1.19.8")
    cached = fake_go(tmp_path / "cache" / f"go{gt.PINNED}.{gt._platform()}" / "bin", gt.PINNED)
    candidates = [str(tmp_path / "absent" / "go"), str(old)]
    assert gt.ensure_go(GO_MOD, tmp_path / "cache", candidates) == cached.parent


def test_a_go_mod_newer_than_the_pin_says_so(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.com/x\n\ngo 9.99\n")
    old = fake_go(tmp_path / "old", "1.19.8")
    with pytest.raises(gt.ToolchainError, match="raise PINNED"):
        gt.ensure_go(tmp_path / "go.mod", tmp_path / "cache", [str(old)])


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """A throw-away HTTP server on the loopback serving *directory*, as a fake module proxy."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_download_whose_hash_differs_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = f"v0.0.1-go{gt.PINNED}.{gt._platform()}"
    prefix = f"golang.org/toolchain@{version}/"
    proxy = tmp_path / "proxy" / "golang.org" / "toolchain" / "@v"
    proxy.mkdir(parents=True)
    (proxy / f"{version}.zip").write_bytes(module_zip({prefix + "bin/go": b"#!/bin/sh\necho tampered\n"}))
    with serve(tmp_path / "proxy") as url:
        monkeypatch.setenv("GOPROXY", f"{url},direct")
        with pytest.raises(gt.ToolchainError, match="refusing to use it"):
            gt.install_pinned(tmp_path / "cache")
    assert not (tmp_path / "cache" / f"go{gt.PINNED}.{gt._platform()}").exists()


def test_unpacking_restores_executable_bits_and_refuses_escapes(tmp_path: Path) -> None:
    prefix = "golang.org/toolchain@v0.0.1-go1.0.0.linux-amd64/"
    good = zipfile.ZipFile(io.BytesIO(module_zip({prefix + "bin/go": b"x", prefix + "src/a.go": b"y"})))
    gt._unpack(good, prefix, tmp_path / "good")
    assert (tmp_path / "good" / "bin" / "go").stat().st_mode & stat.S_IXUSR
    assert not (tmp_path / "good" / "src" / "a.go").stat().st_mode & stat.S_IXUSR
    evil = zipfile.ZipFile(io.BytesIO(module_zip({prefix + "../../escaped": b"z"})))
    with pytest.raises(gt.ToolchainError, match="escapes"):
        gt._unpack(evil, prefix, tmp_path / "evil")
    assert not (tmp_path / "escaped").exists()
