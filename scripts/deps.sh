#!/usr/bin/env bash
# scripts/deps.sh: install what slmesh needs to build, test and run on Debian 12.
#
# Idempotent and quiet when everything is present: it asks dpkg first and only calls
# apt-get (update + install) for the packages that are missing. Uses apt-get as it is
# configured on the machine; it names no registry host. Node packages for the
# integration tests are installed by tests/ (npm ci against tests/package.json).
set -euo pipefail

# Build and test toolchain.
PKGS="build-essential cmake clang libclang-rt-14-dev pkg-config"
# Libraries the product links (each chosen over hand-written code; see docs/design.md).
PKGS="$PKGS libpcre2-dev libjansson-dev libmicrohttpd-dev libsqlite3-dev libssl-dev"
PKGS="$PKGS libcurl4-openssl-dev libpq-dev"
# Test-only: unit test framework, real clients and servers used by integration tests.
PKGS="$PKGS libcmocka-dev curl postgresql"
PKGS="$PKGS libsimde-dev"  # portable x86 intrinsics: the AVX-512 kernels checked on machines without it (CMakeLists.txt)
PKGS="$PKGS jq"  # integration tests read reference JSON (tests/cli_run.sh, cli_score.sh)
PKGS="$PKGS time"  # GNU time: peak RSS of `slmesh run` (tests/run_memory.sh)

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# Node.js and npm (the official `openai` and `ajv` packages drive the integration tests) may
# come from elsewhere than Debian's archive (a nodejs build that bundles npm conflicts with
# Debian's npm package), so they are checked as commands, not packages.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"

if [ -n "$missing" ]; then
    echo "deps: installing:$missing"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
