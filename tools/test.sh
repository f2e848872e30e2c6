#!/usr/bin/env bash
# Set up everything flowkit's checks need, then run them all, stopping at the
# first failure: lint, formatting, types, the documentation build, the Go
# worker's checks and pytest (whose typing test runs pyright, installed here).
# CI runs exactly this (through .ci/run). Arguments are passed to pytest:
#
#     tools/test.sh                 # everything
#     tools/test.sh -x -q tests/unit
#
# Safe to run again and again: the virtualenv (.venv in the repository) and
# the Debian packages are installed only when missing or out of date.
#
# Environment:
#     PYTHON                         interpreter for the virtualenv (python3)
#     FLOWKIT_SKIP_SYSTEM_PACKAGES=1 do not look for or install Debian packages
#     CI                             when set (not 0, false or no), a failed install is fatal
#     FLOWKIT_GO_CACHE               where a downloaded Go toolchain is kept
#                                    (default ~/.cache/flowkit/go)
#     FLOWKIT_PYRIGHT_CACHE          where npm installs the pinned pyright
#                                    (default ~/.cache/flowkit/pyright)
#
# Exported for pytest: FLOWKIT_PYRIGHT, the pyright program installed here,
# which tests/typecheck runs (under CI a missing one fails that test).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
STEP=0
STEPS=9
# The pyright that tests/typecheck runs in strict mode over a user's code. Its
# npm package is self-contained JavaScript (no dependencies, nothing fetched
# at run time) and asks for node >= 14; Debian 12 ships node 18. A new pyright
# can report new errors: change this pin on purpose, with the fixes it asks for.
PYRIGHT_VERSION=1.1.414
PYRIGHT_CACHE="${FLOWKIT_PYRIGHT_CACHE:-$HOME/.cache/flowkit/pyright}"

# Whether CI asks for strictness, read as tests/services.py's in_ci() reads it:
# unset, empty, 0, false or no (any case) is not CI.
in_ci() {
    case "$(echo "${CI:-}" | tr '[:upper:]' '[:lower:]' | tr -d '[:space:]')" in
        "" | 0 | false | no) return 1 ;;
        *) return 0 ;;
    esac
}

banner() {
    STEP=$((STEP + 1))
    printf '\n==> [%d/%d] %s\n' "$STEP" "$STEPS" "$*"
}

have() {
    command -v "$1" >/dev/null 2>&1
}

# --- Debian packages for the servers the functional tests start -----------

# Prints the Debian packages whose programs are absent, one per line.
missing_system_packages() {
    have redis-server || echo redis-server
    # The etcd jobboard's tests start Debian's etcd (tests/services.py).
    have etcd || echo etcd-server
    # Debian's ZooKeeper is a set of jars run with java; no binary on PATH.
    # The tests start it as `java -cp zookeeper.jar ...` (tests/services.py).
    [ -e /usr/share/java/zookeeper.jar ] || echo zookeeper
    # zookeeper depends on a JRE, but the jars may be there without one.
    have java || echo default-jre-headless
    # The PostgreSQL server binaries live outside PATH, in a versioned dir;
    # the tests need initdb and postgres from the same one.
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || echo postgresql
    have go || echo golang-go
    # The TLS test makes its own certificate authority.
    have openssl || echo openssl
    # The monitor's browser test drives Debian's Chromium (never a downloaded one).
    have chromium || echo chromium
    # Debian's python3 makes virtualenvs only with python3-venv (ensurepip).
    "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || echo python3-venv
    # pyright (installed below with npm) runs on node. Debian's nodejs comes
    # without npm; NodeSource's nodejs, where installed, includes it.
    have node || echo nodejs
    have npm || echo npm
}

install_system_packages() {
    # An upstream Go toolchain counts as "go is present"; put it on PATH.
    if ! have go && [ -x /usr/local/go/bin/go ]; then
        export PATH="$PATH:/usr/local/go/bin"
    fi
    local missing
    missing="$(missing_system_packages | tr '\n' ' ')"
    if [ -z "${missing// /}" ]; then
        echo "all present: redis-server, etcd-server, zookeeper (java), postgresql, go, openssl, chromium, python3-venv, nodejs, npm"
        return 0
    fi
    echo "installing: $missing"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! have sudo; then
            echo "not root and no sudo: cannot install $missing" >&2
            return 1
        fi
        # Never wait for a password prompt when nobody can answer it.
        if [ -t 0 ]; then sudo=(sudo); else sudo=(sudo -n); fi
    fi
    # shellcheck disable=SC2086 # $missing is a list of package names
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends $missing
}

banner "Debian packages (redis-server, etcd-server, zookeeper, postgresql, go, nodejs, npm)"
if [ "${FLOWKIT_SKIP_SYSTEM_PACKAGES:-}" = "1" ]; then
    echo "skipped (FLOWKIT_SKIP_SYSTEM_PACKAGES=1)"
elif ! install_system_packages; then
    if in_ci; then
        echo "could not install the Debian packages the tests need" >&2
        exit 1
    fi
    echo "warning: packages missing; tests that need those servers will skip" >&2
fi

# --- Python virtualenv ----------------------------------------------------

banner "virtualenv $VENV with flowkit[dev,all]"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "flowkit needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the packaging metadata or the interpreter changed; the
# editable install picks up code changes by itself.
STAMP="$VENV/.flowkit-install-stamp"
WANT="$(cat setup.cfg setup.py pyproject.toml <("$VENV/bin/python" --version) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev,all]'
    echo "$WANT" >"$STAMP"
    echo "installed"
else
    echo "up to date"
fi
export PATH="$VENV/bin:$PATH"

# --- pyright, for the typing test -----------------------------------------

# Prints the version of the pyright installed in $PYRIGHT_CACHE, or nothing.
installed_pyright_version() {
    local manifest="$PYRIGHT_CACHE/node_modules/pyright/package.json"
    [ -f "$manifest" ] && [ -x "$PYRIGHT_CACHE/node_modules/.bin/pyright" ] || return 0
    node -p 'require(process.argv[1]).version' "$manifest" 2>/dev/null || true
}

install_pyright() {
    if ! have node || ! have npm; then
        echo "node and npm are needed to install pyright (apt-get install nodejs npm)" >&2
        return 1
    fi
    if [ "$(installed_pyright_version)" = "$PYRIGHT_VERSION" ]; then
        echo "up to date: pyright $PYRIGHT_VERSION in $PYRIGHT_CACHE"
        return 0
    fi
    mkdir -p "$PYRIGHT_CACHE"
    # --prefix keeps it out of the global node_modules; an exact version, and
    # no audit, funding or update-notifier requests (the registry is the only
    # host reached).
    npm install --prefix "$PYRIGHT_CACHE" --save-exact --no-audit --no-fund --no-update-notifier \
        --loglevel=error "pyright@$PYRIGHT_VERSION" >/dev/null &&
        [ "$(installed_pyright_version)" = "$PYRIGHT_VERSION" ] &&
        echo "installed: pyright $PYRIGHT_VERSION in $PYRIGHT_CACHE"
}

banner "pyright $PYRIGHT_VERSION (npm) for tests/typecheck"
if install_pyright; then
    export FLOWKIT_PYRIGHT="$PYRIGHT_CACHE/node_modules/.bin/pyright"
elif in_ci; then
    echo "could not install pyright $PYRIGHT_VERSION; CI runs it in tests/typecheck" >&2
    exit 1
else
    echo "warning: no pyright; tests/typecheck's pyright test will skip" >&2
fi

# --- Checks ---------------------------------------------------------------

banner "ruff check"
"$VENV/bin/ruff" check .

banner "ruff format --check"
"$VENV/bin/ruff" format --check .

banner "mypy (strict, flowkit/ and tools/)"
"$VENV/bin/mypy"
# tools/ is a directory of scripts, not a package: each imports its siblings by
# plain name (`from _child_env import child_env`), from the script's own
# directory on sys.path, and so do the measured children, whose start-up is
# timed. mypy checks tools/*.py as those top-level modules. Two modules are
# imported by their dotted name instead, because other processes import them so
# from the checkout root: workers serve tools._bench_worker_tasks (a task's name
# on the wire is module.Class) and conductors rebuild flows from
# tools._bench_jobs_flows. They are left out of the first run and checked under
# that name in a second (mypy takes files or modules, not both). A script that
# imports a sibling the other way fails here: "Source file found twice under
# different module names". Optional peers (the bench extra: prefect, hamilton,
# matplotlib...) are imported by name, so tools/ checks the same without them.
"$VENV/bin/mypy" tools --exclude '^tools/(_bench_jobs_flows|_bench_worker_tasks)\.py$'
"$VENV/bin/mypy" -m tools._bench_jobs_flows -m tools._bench_worker_tasks

banner "Sphinx docs, warnings as errors -> doc/_build/html; their examples run as doctests"
"$VENV/bin/sphinx-build" -q -W --keep-going -b html doc doc/_build/html
"$VENV/bin/sphinx-build" -q -W --keep-going -b doctest doc doc/_build/doctest

banner "Go worker: gofmt, go vet, go test"
# go.mod sets the oldest Go that builds the worker; Debian 12's golang-go is
# older. tools/go_toolchain.py picks the go on PATH or /usr/local/go when new
# enough, and otherwise downloads a pinned, checksummed toolchain once from
# the Go module proxy into a cache (FLOWKIT_GO_CACHE, ~/.cache/flowkit/go).
if go_bin="$("$VENV/bin/python" tools/go_toolchain.py go_worker/go.mod)"; then
    export PATH="$go_bin:$PATH"
    # The Go worker's test fixture builds the binary with $GO: the same toolchain.
    export GO="$go_bin/go"
    (
        cd go_worker
        echo "using $(go version) from $go_bin"
        unformatted="$(gofmt -l .)"
        if [ -n "$unformatted" ]; then
            echo "gofmt would change: $unformatted" >&2
            exit 1
        fi
        go vet ./...
        go test ./...
    )
elif in_ci; then
    echo "no Go toolchain new enough for go_worker/go.mod; CI needs it for the Go worker" >&2
    exit 1
else
    echo "skipped: no Go toolchain new enough for go_worker/go.mod" >&2
fi

banner "pytest $*"
"$VENV/bin/python" -m pytest "$@"
