"""Find a Go toolchain new enough for ``go_worker/go.mod``, downloading one if needed.

Debian 12's ``golang-go`` is Go 1.19, while the worker's ``go.mod`` asks for a
newer language version (it uses ``log/slog``, new in 1.21). Go 1.21 and later
fetch a newer toolchain by themselves (``GOTOOLCHAIN``), but 1.19 cannot, so
``tools/test.sh`` asks this script for a ``bin`` directory to put first on
``PATH`` for the Go step::

    $ python3 tools/go_toolchain.py go_worker/go.mod
    /root/.cache/flowkit/go/go1.22.12.linux-amd64/bin

The choice, in order: the ``go`` on ``PATH``, then ``/usr/local/go/bin/go``
(an upstream install), when either is at least the version ``go.mod`` names;
otherwise the pinned toolchain below, from the cache or downloaded once from
the Go module proxy (which serves every Go release as the module
``golang.org/toolchain``, the way ``go`` itself fetches them). A download is
checked against the checksum pinned here, which is the checksum database's
``h1:`` hash of that module version (``$GOPROXY/sumdb/sum.golang.org/lookup/
golang.org/toolchain@v0.0.1-go1.22.12.linux-amd64``), before it is unpacked.

Only the standard library is used: this runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

__all__ = [
    "PINNED",
    "GoVersion",
    "ToolchainError",
    "dirhash_h1",
    "ensure_go",
    "installed_version",
    "required_version",
]

#: The toolchain downloaded when no Go on the machine is new enough. Raising
#: it means adding the new version's ``h1:`` hashes (one lookup per platform in
#: the checksum database, see the module docstring).
PINNED = "1.22.12"
PINNED_H1 = {
    "linux-amd64": "h1:Hdh4VJAlDWzMnhKpqDwqJJr+sE7NgsJ86dyR4wrv2oY=",
    "linux-arm64": "h1:d5pIIWRmHJcXHnW+PRQ5RyowiqOcFC/80DB4FGToaPU=",
}
DEFAULT_PROXY = "https://proxy.golang.org"
# Executables in a module zip lose their mode bits; ``go`` restores them on
# the files under these directories when it unpacks a toolchain, so do we.
_EXECUTABLE_DIRS = ("bin/", "pkg/tool/")


class ToolchainError(Exception):
    """No suitable Go toolchain could be found or installed."""


@dataclasses.dataclass(frozen=True, order=True)
class GoVersion:
    """A Go release number; a release candidate sorts before its release.

    ``go 1.22`` in a ``go.mod`` means 1.22.0 or later, so a missing patch
    number is 0 and ``prerelease`` 0 marks a final release (rc1 is -2, beta1 -3).
    """

    major: int
    minor: int
    patch: int = 0
    prerelease: int = 0

    _PATTERN = re.compile(r"^(?:go)?(\d+)\.(\d+)(?:\.(\d+))?(?:(rc|beta)(\d+))?$")

    @classmethod
    def parse(cls, text: str) -> GoVersion:
        """Parse ``1.22``, ``1.22.12``, ``go1.22.12`` or ``go1.23rc1``.

        Raises:
            ToolchainError: the text is not a Go version.
        """
        match = cls._PATTERN.match(text.strip())
        if match is None:
            raise ToolchainError(f"not a Go version: {text!r}")
        major, minor, patch, kind, number = match.groups()
        prerelease = 0
        if kind is not None:
            # rcN sorts above betaN and both below the release; N orders within.
            prerelease = (-2000 if kind == "beta" else -1000) + int(number)
        return cls(int(major), int(minor), int(patch or 0), prerelease)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return text if self.prerelease == 0 else f"{text} (a pre-release)"


def required_version(go_mod: Path) -> GoVersion:
    """The minimum Go version a ``go.mod`` asks for (its ``go`` line).

    Raises:
        ToolchainError: the file has no ``go`` line.
    """
    for line in go_mod.read_text(encoding="utf-8").splitlines():
        fields = line.split("//", 1)[0].split()
        if len(fields) == 2 and fields[0] == "go":
            return GoVersion.parse(fields[1])
    raise ToolchainError(f"{go_mod} has no 'go' line")


def installed_version(go: str) -> GoVersion | None:
    """The version of the ``go`` program at *go*, or None if it does not run."""
    try:
        out = subprocess.run([go, "version"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # "go version go1.19.8 linux/amd64"; a devel build says "devel go1.23-..." instead.
    match = re.search(r"\bgo(\d+\.\d+(?:\.\d+)?(?:(?:rc|beta)\d+)?)\b", out)
    return GoVersion.parse(match.group(1)) if match else None


def dirhash_h1(archive: zipfile.ZipFile) -> str:
    """The Go checksum database's ``h1:`` hash of a module zip.

    It is the SHA-256 of the lines ``"<sha256 hex of file>  <name>\\n"``, one per
    file, sorted by name, base64-encoded (``golang.org/x/mod/sumdb/dirhash``).
    """
    names = sorted(info.filename for info in archive.infolist() if not info.is_dir())
    summary = hashlib.sha256()
    for name in names:
        if "\n" in name:
            raise ToolchainError(f"file name with a newline in the archive: {name!r}")
        file_hash = hashlib.sha256()
        with archive.open(name) as member:
            for chunk in iter(lambda: member.read(1 << 20), b""):
                file_hash.update(chunk)
        summary.update(f"{file_hash.hexdigest()}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode("ascii")


def _platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    system = platform.system().lower()
    if arch is None or f"{system}-{arch}" not in PINNED_H1:
        raise ToolchainError(
            f"no pinned Go toolchain for {system}/{machine}; install Go {PINNED} or newer yourself"
        )
    return f"{system}-{arch}"


def _proxy() -> str:
    # GOPROXY is a comma- or pipe-separated list that may hold "direct"/"off";
    # take the first real URL, as go would try first.
    for entry in re.split(r"[,|]", os.environ.get("GOPROXY", "")):
        if entry.startswith(("https://", "http://")):
            return entry.rstrip("/")
    return DEFAULT_PROXY


def _download(url: str, into: Path) -> None:
    print(f"downloading {url}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=120) as response, into.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def _unpack(archive: zipfile.ZipFile, prefix: str, into: Path) -> None:
    """Unpack the files under *prefix* into *into*, refusing paths that escape it."""
    root = into.resolve()
    for info in archive.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        relative = info.filename[len(prefix) :]
        target = (root / relative).resolve()
        if not target.is_relative_to(root):
            raise ToolchainError(f"archive path escapes the target directory: {info.filename!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as member, target.open("wb") as out:
            shutil.copyfileobj(member, out, 1 << 20)
        if relative.startswith(_EXECUTABLE_DIRS):
            target.chmod(0o755)


def install_pinned(cache: Path) -> Path:
    """The ``bin`` directory of the pinned toolchain, downloaded into *cache* if absent.

    Raises:
        ToolchainError: the download fails or does not match the pinned hash.
    """
    plat = _platform()
    name = f"go{PINNED}.{plat}"
    home = cache / name
    go = home / "bin" / "go"
    if installed_version(str(go)) == GoVersion.parse(PINNED):
        return go.parent
    module_version = f"v0.0.1-go{PINNED}.{plat}"
    url = f"{_proxy()}/golang.org/toolchain/@v/{module_version}.zip"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{name}.") as tmp:
        zip_path = Path(tmp) / "toolchain.zip"
        try:
            _download(url, zip_path)
        except OSError as exc:
            raise ToolchainError(f"could not download Go {PINNED} from {url}: {exc}") from exc
        with zipfile.ZipFile(zip_path) as archive:
            got = dirhash_h1(archive)
            want = PINNED_H1[plat]
            if got != want:
                raise ToolchainError(f"{url} has hash {got}, expected {want}: refusing to use it")
            staging = Path(tmp) / "go"
            _unpack(archive, f"golang.org/toolchain@{module_version}/", staging)
        if installed_version(str(staging / "bin" / "go")) != GoVersion.parse(PINNED):
            raise ToolchainError(f"the Go toolchain from {url} does not run here")
        # Replace a broken leftover, then move into place in one rename so a
        # concurrent or interrupted run never sees half a toolchain.
        if home.exists():
            shutil.rmtree(home)
        staging.rename(home)
    return go.parent


def ensure_go(go_mod: Path, cache: Path, candidates: list[str]) -> Path:
    """The ``bin`` directory of a Go toolchain at least as new as *go_mod* asks.

    Args:
        go_mod: the ``go.mod`` whose ``go`` line sets the minimum.
        cache: where a downloaded toolchain is kept between runs.
        candidates: ``go`` programs already on the machine, in order of preference.

    Raises:
        ToolchainError: none is new enough and the pinned one is too old or
            cannot be installed.
    """
    need = required_version(go_mod)
    for candidate in candidates:
        path = shutil.which(candidate)
        if path is None:
            continue
        have = installed_version(path)
        if have is not None and have >= need:
            return Path(path).resolve().parent
        print(f"{path} is Go {have or 'of unknown version'}; {go_mod} needs {need}", file=sys.stderr)
    if GoVersion.parse(PINNED) < need:
        raise ToolchainError(f"{go_mod} needs Go {need}, newer than the pinned {PINNED}: raise PINNED")
    return install_pinned(cache)


def _default_cache() -> Path:
    if "FLOWKIT_GO_CACHE" in os.environ:
        return Path(os.environ["FLOWKIT_GO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flowkit" / "go"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("go_mod", type=Path, help="the go.mod whose 'go' line sets the minimum version")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="download cache (default: $FLOWKIT_GO_CACHE, else ~/.cache/flowkit/go)",
    )
    args = parser.parse_args(argv)
    try:
        bin_dir = ensure_go(args.go_mod, args.cache or _default_cache(), ["go", "/usr/local/go/bin/go"])
    except ToolchainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(bin_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
