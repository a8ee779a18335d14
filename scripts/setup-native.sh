#!/usr/bin/env bash
# Install the native TensorFlow backend for TensorFlow.js (`@tensorflow/tfjs-node`).
#
# tfjs-node's own install script downloads a prebuilt libtensorflow and a prebuilt binding
# from Google storage, which is unreachable here. Instead this script:
#   1. installs @tensorflow/tfjs-node (JS only, --no-save --ignore-scripts) into node_modules;
#   2. downloads the `tensorflow-cpu` wheel from PyPI (pip download, no install) and extracts
#      the Python-free C/C++ runtime (libtensorflow_cc.so.2 + libtensorflow_framework.so.2,
#      which export the TF_* / TFE_* C API) and the C API headers;
#   3. builds tfjs-node's N-API binding (tfjs_binding.node) with node-gyp against them;
#   4. checks that `import('@tensorflow/tfjs-node')` gives a working `tensorflow` backend.
# Everything downloaded or built is cached under .cache/native/ (gitignored), so re-runs,
# including after `npm ci` wiped node_modules, take seconds and need no network.
# `npm ci` and the build do not need this; the README's test command and CI run it, for the
# native tests. See docs/native-backend.md.
#
# Environment overrides (defaults are the tested combination):
#   TFJS_NODE_VERSION  (4.22.0)   TF_WHEEL_VERSION (2.15.1)   TF_WHEEL_PYTHON (3.10)
#   TF_WHEEL_PACKAGE   (tensorflow-cpu)   NATIVE_CACHE_DIR (<repo>/.cache/native)
#   FORCE=1  rebuild the binding even if a cached one exists.
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TFJS_NODE_VERSION="${TFJS_NODE_VERSION:-4.22.0}"
TF_WHEEL_PACKAGE="${TF_WHEEL_PACKAGE:-tensorflow-cpu}"
TF_WHEEL_VERSION="${TF_WHEEL_VERSION:-2.15.1}"
TF_WHEEL_PYTHON="${TF_WHEEL_PYTHON:-3.10}"
CACHE="${NATIVE_CACHE_DIR:-$REPO/.cache/native}"
FORCE="${FORCE:-0}"

# sha256 of the tested default wheel (pip also checks the index's hashes; this pins the content).
declare -A KNOWN_SHA256=(
  ["tensorflow_cpu-2.15.1-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]="ba9503db2c5357ea21938555323581fbdabf3d051b6bc1b5f73c5b0ae034d077"
)

STEP="starting"
log()  { printf '[setup-native] %s\n' "$*"; }
step() { STEP="$*"; printf '[setup-native] ==> %s\n' "$*"; }
die()  { printf '[setup-native] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; printf "[setup-native] FAILED (exit %s) during: %s\n" "$rc" "$STEP" >&2; exit "$rc"' ERR

cd "$REPO"
PKG_DIR="$REPO/node_modules/@tensorflow/tfjs-node"
TF_DIR="$CACHE/tensorflow-$TF_WHEEL_VERSION"      # extracted libs + headers
WHEEL_DIR="$CACHE/wheels"
LOGS="$CACHE/logs"

# ---------------------------------------------------------------------------------------------
step "checking prerequisites"
[[ "$(uname -s)" == Linux && "$(uname -m)" == x86_64 ]] \
  || die "only Linux x86_64 is supported (this is $(uname -s) $(uname -m)): the PyPI wheel's libraries are linux x86_64"
for tool in node npm python3 make g++; do
  command -v "$tool" >/dev/null || die "'$tool' not found on PATH (needed to fetch the wheel / build the binding)"
done
python3 -m pip --version >/dev/null 2>&1 || die "'python3 -m pip' does not work: pip is needed to download the $TF_WHEEL_PACKAGE wheel from PyPI"
[[ -f "$REPO/node_modules/@tensorflow/tfjs/package.json" ]] \
  || die "node_modules/@tensorflow/tfjs is missing: run 'npm ci' first"
mkdir -p "$CACHE" "$WHEEL_DIR" "$LOGS"

# Quick check used at the start (idempotence) and at the end (verification).
verify() {
  (cd "$REPO" && TF_CPP_MIN_LOG_LEVEL=2 node --input-type=module -e '
    const tf = await import("@tensorflow/tfjs-node");
    if (tf.getBackend() !== "tensorflow") throw new Error("backend is " + tf.getBackend());
    const a = tf.tensor2d([[1, 2], [3, 4]]);
    const got = Array.from(await a.matMul(a).data()).join(",");
    if (got !== "7,10,15,22") throw new Error("matMul gave " + got);
    const g = Array.from(await tf.grad((x) => x.square().sum())(tf.tensor1d([1, 2, 3])).data()).join(",");
    if (g !== "2,4,6") throw new Error("grad gave " + g);
    console.log("tfjs-node " + tf.version["tfjs-node"] + ", backend " + tf.getBackend() + ", matMul and grad OK");
  ')
}

installed_version() {
  node -p "require('$PKG_DIR/package.json').version" 2>/dev/null || true
}

STAMP="$PKG_DIR/deps/.metatrain-native"
WANT_STAMP="tfjs-node=$TFJS_NODE_VERSION $TF_WHEEL_PACKAGE=$TF_WHEEL_VERSION"
if [[ "$FORCE" != 1 && "$(installed_version)" == "$TFJS_NODE_VERSION" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT_STAMP" ]]; then
  step "already set up ($WANT_STAMP); verifying"
  if out="$(verify 2>&1)"; then
    log "$out"
    log "nothing to do."
    exit 0
  fi
  log "existing install does not work, rebuilding:"
  printf '%s\n' "$out" | tail -5 | sed 's/^/    /'
fi

# ---------------------------------------------------------------------------------------------
if [[ "$(installed_version)" != "$TFJS_NODE_VERSION" ]]; then
  step "installing @tensorflow/tfjs-node@$TFJS_NODE_VERSION into node_modules (npm --no-save --ignore-scripts)"
  # --ignore-scripts: its install script would try (and fail) to download libtensorflow.
  # --no-save: package.json and package-lock.json stay as they are; guard that anyway.
  cp package.json "$CACHE/package.json.bak"; cp package-lock.json "$CACHE/package-lock.json.bak"
  if ! npm install --no-save --ignore-scripts --no-audit --no-fund \
        "@tensorflow/tfjs-node@$TFJS_NODE_VERSION" >"$LOGS/npm-install.log" 2>&1; then
    tail -20 "$LOGS/npm-install.log" >&2
    die "npm install of @tensorflow/tfjs-node@$TFJS_NODE_VERSION failed (log: $LOGS/npm-install.log)"
  fi
  if ! cmp -s package.json "$CACHE/package.json.bak" || ! cmp -s package-lock.json "$CACHE/package-lock.json.bak"; then
    cp "$CACHE/package.json.bak" package.json; cp "$CACHE/package-lock.json.bak" package-lock.json
    log "warning: npm touched package.json/package-lock.json; restored them"
  fi
  rm -f "$CACHE/package.json.bak" "$CACHE/package-lock.json.bak"
  [[ "$(installed_version)" == "$TFJS_NODE_VERSION" ]] \
    || die "after npm install, node_modules/@tensorflow/tfjs-node is '$(installed_version)', wanted $TFJS_NODE_VERSION"
else
  log "@tensorflow/tfjs-node@$TFJS_NODE_VERSION already in node_modules"
fi

# ---------------------------------------------------------------------------------------------
if [[ -f "$TF_DIR/.complete" ]]; then
  log "TensorFlow $TF_WHEEL_VERSION C libraries cached in ${TF_DIR#$REPO/}"
else
  step "downloading $TF_WHEEL_PACKAGE==$TF_WHEEL_VERSION wheel from PyPI (about 200 MB, once)"
  shopt -s nullglob
  wheels=("$WHEEL_DIR"/"${TF_WHEEL_PACKAGE//-/_}-$TF_WHEEL_VERSION"-*.whl)
  if (( ${#wheels[@]} == 0 )); then
    if ! python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
          --python-version "$TF_WHEEL_PYTHON" --platform manylinux2014_x86_64 \
          "$TF_WHEEL_PACKAGE==$TF_WHEEL_VERSION" -d "$WHEEL_DIR" >"$LOGS/pip-download.log" 2>&1; then
      tail -20 "$LOGS/pip-download.log" >&2
      die "pip download $TF_WHEEL_PACKAGE==$TF_WHEEL_VERSION (python $TF_WHEEL_PYTHON, manylinux2014_x86_64) failed (log: $LOGS/pip-download.log)"
    fi
    wheels=("$WHEEL_DIR"/"${TF_WHEEL_PACKAGE//-/_}-$TF_WHEEL_VERSION"-*.whl)
  else
    log "wheel already cached: ${wheels[0]##*/}"
  fi
  shopt -u nullglob
  (( ${#wheels[@]} > 0 )) || die "pip reported success but no ${TF_WHEEL_PACKAGE//-/_}-$TF_WHEEL_VERSION-*.whl is in $WHEEL_DIR"
  WHEEL="${wheels[0]}"
  want_sha="${KNOWN_SHA256[${WHEEL##*/}]:-}"
  if [[ -n "$want_sha" ]]; then
    got_sha="$(sha256sum "$WHEEL" | cut -d' ' -f1)"
    if [[ "$got_sha" != "$want_sha" ]]; then
      rm -f "$WHEEL"
      die "sha256 of ${WHEEL##*/} is $got_sha, expected $want_sha (deleted it; re-run to download again)"
    fi
    log "sha256 OK"
  fi

  step "extracting libtensorflow_cc.so.2, libtensorflow_framework.so.2 and C API headers"
  rm -rf "$TF_DIR" "$TF_DIR.tmp"; mkdir -p "$TF_DIR.tmp"
  python3 - "$WHEEL" "$TF_DIR.tmp" <<'PY'
import os, sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
libs = {"tensorflow/libtensorflow_cc.so.2": "lib/libtensorflow_cc.so.2",
        "tensorflow/libtensorflow_framework.so.2": "lib/libtensorflow_framework.so.2"}
hdr_prefixes = ("tensorflow/include/tensorflow/c/", "tensorflow/include/tensorflow/core/platform/",
                "tensorflow/include/tsl/c/", "tensorflow/include/tsl/platform/",
                "tensorflow/include/xla/tsl/c/", "tensorflow/include/xla/tsl/platform/")  # tsl moved under xla/ in 2.1x
found = set()
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        name = info.filename
        if name in libs:
            dest = libs[name]; found.add(name)
        elif name.startswith(hdr_prefixes) and not name.endswith("/"):
            dest = "include/" + name[len("tensorflow/include/"):]
        else:
            continue
        dest = os.path.join(out, dest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        if dest.endswith(".so.2"):
            os.chmod(dest, 0o755)
missing = [n for n in libs if n not in found]
if missing:
    sys.exit("wheel lacks " + ", ".join(missing) + " (only TF >= 2.12-ish wheels ship the Python-free libtensorflow_cc.so.2)")
for h in ("include/tensorflow/c/c_api.h", "include/tensorflow/c/eager/c_api.h"):
    if not os.path.exists(os.path.join(out, h)):
        sys.exit("wheel lacks the C API header " + h)
PY
  # The binding must find the C API functions it calls in these two libraries
  if command -v nm >/dev/null; then
    # (newer wheels move some of it, e.g. TF_NewTensor in 2.20, into libtensorflow_framework.so.2)
    nm -D --defined-only "$TF_DIR.tmp/lib/libtensorflow_cc.so.2" "$TF_DIR.tmp/lib/libtensorflow_framework.so.2" \
      >"$TF_DIR.tmp/symbols.txt"
    for sym in TF_Version TF_NewTensor TF_LoadSessionFromSavedModel TFE_NewContext TFE_Execute TFE_OpSetAttrShape; do
      grep -q " $sym\(@\|$\)" "$TF_DIR.tmp/symbols.txt" \
        || die "neither libtensorflow_cc.so.2 nor libtensorflow_framework.so.2 from $TF_WHEEL_PACKAGE $TF_WHEEL_VERSION exports the C API function $sym"
    done
    rm -f "$TF_DIR.tmp/symbols.txt"
  fi
  touch "$TF_DIR.tmp/.complete"
  mv "$TF_DIR.tmp" "$TF_DIR"
  log "cached in ${TF_DIR#$REPO/} ($(du -sh "$TF_DIR" | cut -f1))"
fi

# ---------------------------------------------------------------------------------------------
step "placing the TensorFlow libraries in node_modules/@tensorflow/tfjs-node/deps"
rm -rf "$PKG_DIR/deps"; mkdir -p "$PKG_DIR/deps/lib"
cp -r "$TF_DIR/include" "$PKG_DIR/deps/include"
for f in libtensorflow_cc.so.2 libtensorflow_framework.so.2; do
  # hard link (no extra 600 MB) when .cache and node_modules share a filesystem, else copy
  ln "$TF_DIR/lib/$f" "$PKG_DIR/deps/lib/$f" 2>/dev/null || cp "$TF_DIR/lib/$f" "$PKG_DIR/deps/lib/$f"
done
# binding.gyp links -ltensorflow -ltensorflow_framework with rpath $ORIGIN/../../deps/lib;
# libtensorflow_cc.so.2 carries the whole C API, so it stands in for libtensorflow.so.
ln -sf libtensorflow_cc.so.2 "$PKG_DIR/deps/lib/libtensorflow.so"
ln -sf libtensorflow_framework.so.2 "$PKG_DIR/deps/lib/libtensorflow_framework.so"

# Where tfjs-node (via @mapbox/node-pre-gyp) will look for the binding, e.g. lib/napi-v8/.
BINDING_PATH="$(cd "$PKG_DIR" && node -p "require('@mapbox/node-pre-gyp').find(require.resolve('./package.json'))")" \
  || die "could not ask @mapbox/node-pre-gyp where tfjs_binding.node belongs"
MODULE_PATH="$(dirname "$BINDING_PATH")"
NAPI_VERSION="${MODULE_PATH##*napi-v}"
[[ "$NAPI_VERSION" =~ ^[0-9]+$ ]] || die "unexpected binding path $BINDING_PATH"
BIN_CACHE="$CACHE/binding/tfjs-node-$TFJS_NODE_VERSION-$TF_WHEEL_PACKAGE-$TF_WHEEL_VERSION-napi-v$NAPI_VERSION"

if [[ "$FORCE" != 1 && -f "$BIN_CACHE/tfjs_binding.node" ]]; then
  log "using cached binding ${BIN_CACHE#$REPO/}/tfjs_binding.node"
else
  step "building tfjs_binding.node (N-API v$NAPI_VERSION) with node-gyp"
  NODE_GYP=""
  for cand in "$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js" \
              "$(npm prefix -g 2>/dev/null)/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js" \
              "$CACHE/tools/node_modules/node-gyp/bin/node-gyp.js"; do
    [[ -f "$cand" ]] && { NODE_GYP="$cand"; break; }
  done
  if [[ -z "$NODE_GYP" ]]; then
    log "npm's bundled node-gyp not found; installing node-gyp into ${CACHE#$REPO/}/tools"
    npm install --prefix "$CACHE/tools" --no-save --no-audit --no-fund node-gyp >"$LOGS/node-gyp-install.log" 2>&1 \
      || die "npm install node-gyp failed (log: $LOGS/node-gyp-install.log)"
    NODE_GYP="$CACHE/tools/node_modules/node-gyp/bin/node-gyp.js"
  fi
  # Node headers: node-gyp would download them from nodejs.org (unreachable); use local ones.
  NODEDIR=""
  for cand in "${NODEDIR_OVERRIDE:-}" "$(npm config get nodedir 2>/dev/null)" \
              "$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"; do
    [[ -n "$cand" && "$cand" != undefined && -f "$cand/include/node/node_api.h" ]] && { NODEDIR="$cand"; break; }
  done
  [[ -n "$NODEDIR" ]] || die "Node.js headers (include/node/node_api.h) not found next to $(command -v node) nor in 'npm config get nodedir'; set NODEDIR_OVERRIDE=<dir containing include/node>"
  log "node-gyp: $NODE_GYP; node headers: $NODEDIR/include/node"
  if ! (cd "$PKG_DIR" && node "$NODE_GYP" rebuild --nodedir="$NODEDIR" \
          --module_name=tfjs_binding --module_path="$MODULE_PATH" --napi_build_version="$NAPI_VERSION" \
          >"$LOGS/node-gyp-build.log" 2>&1); then
    grep -E "error|Error" "$LOGS/node-gyp-build.log" | head -20 >&2 || tail -20 "$LOGS/node-gyp-build.log" >&2
    die "node-gyp build of tfjs_binding.node failed (log: $LOGS/node-gyp-build.log)"
  fi
  [[ -f "$BINDING_PATH" ]] || die "node-gyp succeeded but $BINDING_PATH was not produced"
  rm -rf "$BIN_CACHE.tmp"; mkdir -p "$BIN_CACHE.tmp"
  cp "$BINDING_PATH" "$BIN_CACHE.tmp/"
  rm -rf "$BIN_CACHE"; mv "$BIN_CACHE.tmp" "$BIN_CACHE"
  rm -rf "$PKG_DIR/build"   # intermediate objects; the binding is in $MODULE_PATH and the cache
fi
mkdir -p "$MODULE_PATH"
cp "$BIN_CACHE/tfjs_binding.node" "$BINDING_PATH"

# ---------------------------------------------------------------------------------------------
step "verifying import('@tensorflow/tfjs-node')"
if ! out="$(verify 2>&1)"; then
  printf '%s\n' "$out" | tail -15 >&2
  if command -v ldd >/dev/null; then
    ldd "$BINDING_PATH" 2>&1 | grep -i "not found" >&2 || true
  fi
  die "the built binding does not load or compute correctly"
fi
printf '%s\n' "$WANT_STAMP" >"$STAMP"
log "$out"
log "done: native backend 'tensorflow' ready (TensorFlow $TF_WHEEL_VERSION C library from the $TF_WHEEL_PACKAGE wheel)."
log "note: 'npm ci' / 'npm install' remove @tensorflow/tfjs-node again; re-run 'npm run setup:native' (cached, seconds)."
