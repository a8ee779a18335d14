// Deployment files: the real validators pass on every overlay, manifest, Dockerfile and the compose
// file (scripts/validate-deploy.sh) and catch broken ones; and the deployment agrees with the code —
// entry command, roles, ports, environment variable names, task queue, timeouts — so nothing drifts.
//
//   node --import tsx --test test/deploy/deploy.test.ts
//
// Without the validators (and no way to install them) the tests that need them skip with the install
// hint; under CI they fail instead.
import { after, before, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { CODE, COMPOSE, ENV_NOT_READ_BY_CODE, K8S, PROMETHEUS_JOBS, REQUIRED_WORKER_ENV, SUBMIT } from "./expected.js";
import * as facts from "./facts.js";

const ROOT = facts.ROOT;
const SCRIPT = join(ROOT, "scripts/validate-deploy.sh");
const WORK = mkdtempSync(join(tmpdir(), "metatrain-deploy-test-"));
const OUT = join(WORK, "out");
const OVERLAYS = ["local", "gpu-cluster", "temporal-cloud", "temporal-mtls"] as const;
const GPU_OVERLAYS = ["gpu-cluster", "temporal-cloud", "temporal-mtls"] as const;

// eslint-style escape hatch: rendered manifests are untyped JSON.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

interface ScriptRun {
  rc: number;
  output: string;
}

function runValidate(env: Record<string, string>, timeoutMs = 20 * 60_000): ScriptRun {
  const r = spawnSync("bash", [SCRIPT], { cwd: ROOT, env: { ...process.env, ...env }, encoding: "utf8", timeout: timeoutMs });
  return { rc: r.status ?? -1, output: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? `\n${r.error.message}` : ""}` };
}

let validation: ScriptRun;
before(() => {
  validation = runValidate({ DEPLOY_VALIDATE_OUT: OUT });
});
after(() => rmSync(WORK, { recursive: true, force: true }));

/** Skip (outside CI) or fail (CI) when the validators are missing; true when the test may go on. */
function needValidators(t: TestContext): boolean {
  if (validation.rc !== 3) return true;
  const hint = validation.output.split("\n").find((l) => l.includes("MISSING VALIDATOR")) ?? validation.output;
  if (process.env.CI) assert.fail(`deployment validators are missing in CI (install them: bash scripts/validate-deploy.sh installs them from PyPI and npm):\n${hint}`);
  t.skip(hint);
  return false;
}

function rendered(overlay: string): Obj[] {
  const path = join(OUT, `k8s-${overlay}.json`);
  assert.ok(existsSync(path), `validate-deploy.sh did not render ${overlay}:\n${validation.output}`);
  return JSON.parse(readFileSync(path, "utf8")) as Obj[];
}

const find = (docs: Obj[], kind: string, name: string): Obj => {
  const d = docs.find((x) => x.kind === kind && x.metadata?.name === name);
  assert.ok(d, `${kind}/${name} is not in the rendered manifests`);
  return d;
};
const workerContainer = (deploy: Obj): Obj => {
  const c = (deploy.spec.template.spec.containers as Obj[]).find((x) => x.name === K8S.container);
  assert.ok(c, `${deploy.metadata.name} has no container named ${K8S.container}`);
  return c;
};
const envValue = (c: Obj, name: string): Obj | undefined => (c.env as Obj[] | undefined)?.find((e) => e.name === name);

function composeFile(): Obj {
  return parseYaml(readFileSync(join(ROOT, "infra/compose.yaml"), "utf8"), { merge: true }) as Obj;
}
/** Compose services that run a metatrain image. */
const metatrainServices = (c: Obj): [string, Obj][] =>
  Object.entries(c.services as Obj).filter(([, s]) => typeof s.image === "string" && s.image.startsWith("metatrain"));

const dockerfiles = (): [string, facts.DockerStage[]][] =>
  ["infra/docker/Dockerfile", "infra/docker/Dockerfile.gpu"].map((p) => [p, facts.parseDockerfile(readFileSync(join(ROOT, p), "utf8"))]);

// ---- the real validators ----------------------------------------------------------------------------

test("validate-deploy.sh: every overlay, example manifest, Dockerfile and the compose file pass the real validators", (t) => {
  if (!needValidators(t)) return;
  t.diagnostic(validation.output.split("\n").filter((l) => l.includes("tools:") || l.includes("valid")).join("\n"));
  assert.equal(validation.rc, 0, validation.output);
  assert.match(validation.output, /OK: every overlay/);
  for (const o of OVERLAYS) assert.ok(existsSync(join(OUT, `k8s-${o}.json`)), `overlay ${o} not rendered`);
});

test("validate-deploy.sh fails, naming the problem, on a broken manifest, CRD object, Dockerfile and compose file", (t) => {
  if (!needValidators(t)) return;
  const tree = join(WORK, "broken");
  for (const d of ["k8s", "infra"]) cpSync(join(ROOT, d), join(tree, d), { recursive: true });
  const edit = (rel: string, from: string | RegExp, to: string): void => {
    const p = join(tree, rel);
    const before = readFileSync(p, "utf8");
    const after = before.replace(from, to);
    assert.notEqual(after, before, `test setup: ${String(from)} not found in ${rel}`);
    writeFileSync(p, after);
  };
  // An unknown container field (strict schema), an unknown queue type (temporal trigger structure),
  // a fallback behaviour KEDA does not have (CRD schema), `cd` in RUN (hadolint DL3003) and a
  // misspelt service key (compose schema).
  edit("k8s/base/gpu-worker.yaml", "          imagePullPolicy: IfNotPresent", "          imagePullPolicy: IfNotPresent\n          restartPolicyy: Always");
  edit("k8s/components/keda-autoscaling/scaledobject.yaml", "queueTypes: activity", "queueTypes: activities");
  edit("k8s/components/keda-autoscaling/scaledobject.yaml", "behavior: currentReplicasIfHigher", "behavior: sometimes");
  edit("infra/docker/Dockerfile", "RUN npx tsc -p tsconfig.json", "RUN cd /tmp && npx tsc -p /app/tsconfig.json");
  edit("infra/compose.yaml", "restart: unless-stopped", "restartt: unless-stopped");
  const r = runValidate({ DEPLOY_VALIDATE_ROOT: tree, DEPLOY_VALIDATE_OUT: join(WORK, "broken-out"), VALIDATE_DEPLOY_INSTALL: "0" });
  assert.equal(r.rc, 1, r.output);
  assert.match(r.output, /FAIL: .*Deployment\/metatrain-gpu-worker against Kubernetes .*restartPolicyy/);
  assert.match(r.output, /FAIL: .*ScaledObject\/metatrain-gpu-worker: temporal trigger 0: queueTypes "activities"/);
  assert.match(r.output, /FAIL: .*ScaledObject\/metatrain-gpu-worker: CRD schema: .*fallback\/behavior/);
  assert.match(r.output, /DL3003/);
  assert.match(r.output, /additional properties 'restartt' not allowed/);
  assert.match(r.output, /FAIL: infra\/compose.yaml does not pass/);
});

// ---- scripts the images run ---------------------------------------------------------------------------

test("healthcheck.mjs: 0 when /healthz on METATRAIN_METRICS_PORT answers 200; 1 on 503, on no server, without the variable", async () => {
  let status = 200;
  const server: Server = createServer((req, res) => {
    res.statusCode = req.url === "/healthz" ? status : 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const check = (env: Record<string, string | undefined>): Promise<number> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, "infra/docker/healthcheck.mjs")], { env: { PATH: process.env.PATH, ...env }, stdio: "ignore" });
      child.on("exit", (code) => resolve(code ?? -1));
    });
  try {
    assert.equal(await check({ METATRAIN_METRICS_PORT: String(port) }), 0);
    status = 503;
    assert.equal(await check({ METATRAIN_METRICS_PORT: String(port) }), 1);
    assert.equal(await check({}), 1);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  assert.equal(await check({ METATRAIN_METRICS_PORT: String(port) }), 1, "no server listening");
});

test("bundle-workflows: builds the workflow bundle the images load through METATRAIN_WORKFLOW_BUNDLE", () => {
  const out = join(WORK, "bundle", "workflow-bundle.js");
  const r = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, CODE.bundleScript), "--out", out], { cwd: ROOT, encoding: "utf8", timeout: 5 * 60_000 });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.ok(statSync(out).size > 100_000, "bundle suspiciously small");
  assert.match(readFileSync(out, "utf8"), /metaTrainingWorkflow/);
});

// ---- no drift between the deployment and the code ------------------------------------------------------

test("entry command and roles: images, manifests, compose and the submit Job run the code's entry points", async (t) => {
  if (!needValidators(t)) return;
  const roles = facts.roles();
  t.diagnostic(`roles from ${roles.source}; compiled to ${facts.outDir()}/`);
  const workerMain = facts.compiledPath(CODE.workerEntry);
  const cliMain = facts.compiledPath(CODE.cliEntry);
  assert.ok(facts.exists(CODE.bundleScript), `${CODE.bundleScript} (run by the image build) is missing`);
  const entry = ["node", workerMain];
  const roleArgs = (role: string): string[] => {
    assert.ok(roles.value.includes(role), `role ${role} is not one of the worker's roles ${roles.value.join(", ")}`);
    return ["--role", role];
  };

  for (const [path, stages] of dockerfiles()) {
    const runtime = stages.at(-1)!;
    assert.deepEqual(facts.execForm(runtime, "ENTRYPOINT"), entry, `${path} ENTRYPOINT`);
    assert.deepEqual(facts.execForm(runtime, "CMD"), roleArgs(path.endsWith(".gpu") ? "gpu" : "coordinator"), `${path} CMD`);
    // The bundle the build stage writes is the one the runtime points the worker at.
    const build = stages.find((s) => s.name === "build")!;
    const workdir = build.instructions.filter((i) => i.op === "WORKDIR").at(-1)!.args;
    const bundleRun = build.instructions.find((i) => i.op === "RUN" && i.args.includes("bundle-workflows"))!;
    assert.ok(bundleRun.args.includes(`node ${facts.compiledPath(CODE.bundleScript)}`), `${path} runs ${facts.compiledPath(CODE.bundleScript)}`);
    const out = /--out\s+(\S+)/.exec(bundleRun.args)![1]!;
    assert.equal(facts.stageEnv(runtime).get("METATRAIN_WORKFLOW_BUNDLE"), `${workdir}/${out}`, `${path}: METATRAIN_WORKFLOW_BUNDLE`);
    assert.ok(build.instructions.some((i) => i.op === "COPY" && i.args === "--from=build /app/dist ./dist") || runtime.instructions.some((i) => i.op === "COPY" && i.args.startsWith("--from=build /app/dist")), `${path} copies dist from the build stage`);
  }

  for (const overlay of OVERLAYS) {
    const docs = rendered(overlay);
    for (const [name, role] of [[K8S.gpuWorker, "gpu"], [K8S.coordinator, "coordinator"]] as const) {
      const c = workerContainer(find(docs, "Deployment", name));
      assert.equal(c.command, undefined, `${overlay} ${name}: no command override (the image ENTRYPOINT runs ${workerMain})`);
      assert.deepEqual(c.args, roleArgs(role), `${overlay} ${name} args`);
    }
  }

  const compose = composeFile();
  for (const [name, role] of [[COMPOSE.coordinator, "coordinator"], [COMPOSE.worker, "gpu"], [COMPOSE.gpuWorker, "gpu"]] as const) {
    const s = compose.services[name] as Obj;
    assert.equal(s.entrypoint, undefined, `compose ${name}: no entrypoint override`);
    assert.deepEqual(s.command, roleArgs(role), `compose ${name} command`);
  }

  // The submit examples run the CLI's compiled entry point with a preset that exists.
  assert.ok(facts.exists(CODE.cliEntry), `${CODE.cliEntry} is missing`);
  const presets = await facts.presetNames();
  const job = parseYaml(readFileSync(join(ROOT, "k8s/examples/submit-job.yaml"), "utf8")) as Obj;
  const jobC = job.spec.template.spec.containers[0] as Obj;
  const submit = compose.services[COMPOSE.submit] as Obj;
  for (const [what, command, args] of [["k8s/examples/submit-job.yaml", jobC.command, jobC.args], ["compose submit", submit.entrypoint, submit.command]] as const) {
    assert.deepEqual(command, ["node", cliMain], `${what}: command`);
    assert.deepEqual(args, [SUBMIT.subcommand, "--preset", SUBMIT.preset], `${what}: args`);
  }
  if (presets) assert.ok(presets.value.includes(SUBMIT.preset), `preset ${SUBMIT.preset} is not in ${presets.source}`);
  else t.diagnostic("meta/algorithms/registry.ts missing: preset name not checked");
});

test("metrics ports: images, containers, probes, Services, ServiceMonitor, NetworkPolicy, compose and Prometheus agree with telemetry", async (t) => {
  if (!needValidators(t)) return;
  const ports = await facts.metricsPorts();
  t.diagnostic(`metrics ports ${ports.value.metrics}/${ports.value.temporal} from ${ports.source}`);
  const { metrics, temporal } = ports.value;

  for (const [path, stages] of dockerfiles()) {
    const runtime = stages.at(-1)!;
    const env = facts.stageEnv(runtime);
    assert.equal(env.get("METATRAIN_METRICS_PORT"), String(metrics), `${path} ENV METATRAIN_METRICS_PORT`);
    assert.equal(env.get("METATRAIN_TEMPORAL_METRICS_PORT"), String(temporal), `${path} ENV METATRAIN_TEMPORAL_METRICS_PORT`);
    const exposed = runtime.instructions.filter((i) => i.op === "EXPOSE").flatMap((i) => i.args.split(/\s+/)).map((p) => Number(p.split("/")[0]));
    assert.deepEqual(exposed.sort(), [metrics, temporal].sort(), `${path} EXPOSE`);
    assert.ok(runtime.instructions.some((i) => i.op === "HEALTHCHECK" && i.args.includes("healthcheck.mjs")), `${path} HEALTHCHECK runs healthcheck.mjs`);
  }

  for (const overlay of OVERLAYS) {
    const docs = rendered(overlay);
    for (const name of [K8S.gpuWorker, K8S.coordinator]) {
      const d = find(docs, "Deployment", name);
      const c = workerContainer(d);
      const byName = Object.fromEntries((c.ports as Obj[]).map((p) => [p.name, p.containerPort]));
      assert.deepEqual(byName, { metrics, "temporal-metrics": temporal }, `${overlay} ${name} container ports`);
      assert.equal(envValue(c, "METATRAIN_METRICS_PORT")?.value, String(metrics), `${overlay} ${name} METATRAIN_METRICS_PORT`);
      assert.equal(envValue(c, "METATRAIN_TEMPORAL_METRICS_PORT")?.value, String(temporal), `${overlay} ${name} METATRAIN_TEMPORAL_METRICS_PORT`);
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        assert.equal(c[probe]?.httpGet?.port, "metrics", `${overlay} ${name} ${probe} on the metrics port`);
      }
      assert.equal(c.readinessProbe.httpGet.path, "/healthz", `${overlay} ${name}: readiness on /healthz`);
      const ann = d.spec.template.metadata.annotations as Obj;
      assert.equal(ann["prometheus.io/port"], String(metrics), `${overlay} ${name} prometheus.io/port`);
      assert.equal(ann["prometheus.io/path"], "/metrics");
    }
    const services = docs.filter((x) => x.kind === "Service" && x.metadata.labels?.["metatrain.io/scrape"] === "true");
    assert.deepEqual(services.map((s) => s.metadata.labels["metatrain.io/job"]).sort(), [PROMETHEUS_JOBS.coordinator, PROMETHEUS_JOBS.gpu].sort(), `${overlay}: job names as in prometheus.yml`);
    for (const s of services) {
      const sp = Object.fromEntries((s.spec.ports as Obj[]).map((p) => [p.name, [p.port, p.targetPort]]));
      assert.deepEqual(sp, { metrics: [metrics, "metrics"], "temporal-metrics": [temporal, "temporal-metrics"] }, `${overlay} Service ${s.metadata.name}`);
      const selected = docs.filter((x) => x.kind === "Deployment" && Object.entries(s.spec.selector as Obj).every(([k, v]) => x.spec.template.metadata.labels?.[k] === v));
      assert.equal(selected.length, 1, `${overlay} Service ${s.metadata.name} selects one Deployment`);
    }
    const np = find(docs, "NetworkPolicy", "metatrain-workers");
    const ingressPorts = (np.spec.ingress as Obj[]).flatMap((r) => (r.ports as Obj[]).map((p) => p.port));
    assert.deepEqual(ingressPorts.sort(), ["metrics", "temporal-metrics"], `${overlay}: NetworkPolicy admits the scrape ports`);
    const sm = docs.find((x) => x.kind === "ServiceMonitor");
    if (overlay === "local") assert.equal(sm, undefined, "local has no prometheus-operator");
    else {
      assert.ok(sm, `${overlay}: ServiceMonitor`);
      assert.equal(sm.spec.jobLabel, "metatrain.io/job");
      assert.deepEqual((sm.spec.endpoints as Obj[]).map((e) => e.port), ["metrics", "temporal-metrics"]);
      const sdk = (sm.spec.endpoints as Obj[])[1]!.relabelings?.find((r: Obj) => r.targetLabel === "job");
      assert.equal(sdk?.replacement, PROMETHEUS_JOBS.sdk);
    }
  }

  const compose = composeFile();
  for (const [name, s] of metatrainServices(compose)) {
    assert.equal(s.environment.METATRAIN_METRICS_PORT, String(metrics), `compose ${name} METATRAIN_METRICS_PORT`);
    assert.equal(s.environment.METATRAIN_TEMPORAL_METRICS_PORT, String(temporal), `compose ${name} METATRAIN_TEMPORAL_METRICS_PORT`);
  }
  // infra/prometheus/prometheus.yml (the observability work) scrapes the compose services by DNS.
  const promPath = join(ROOT, "infra/prometheus/prometheus.yml");
  if (!existsSync(promPath)) {
    t.diagnostic("infra/prometheus/prometheus.yml missing: compose scrape targets not checked");
    return;
  }
  const prom = parseYaml(readFileSync(promPath, "utf8")) as Obj;
  const jobs = new Map<string, Obj>((prom.scrape_configs as Obj[]).map((j) => [j.job_name, j]));
  for (const job of Object.values(PROMETHEUS_JOBS)) assert.ok(jobs.has(job), `prometheus.yml has job ${job}`);
  const targets = (job: string): [string, number][] =>
    ((jobs.get(job)!.dns_sd_configs ?? []) as Obj[]).flatMap((c) => (c.names as string[]).map((n) => [n, c.port as number] as [string, number]));
  // Each job scrapes compose services of its role on the metrics port; the SDK job, the SDK port.
  const roleOf = (name: string): string | undefined => (compose.services[name]?.command as string[] | undefined)?.[1];
  for (const [job, role, port] of [[PROMETHEUS_JOBS.coordinator, "coordinator", metrics], [PROMETHEUS_JOBS.gpu, "gpu", metrics], [PROMETHEUS_JOBS.sdk, undefined, temporal]] as const) {
    const tg = targets(job);
    assert.ok(tg.length > 0, `prometheus.yml job ${job} has no dns_sd_configs targets`);
    for (const [name, p] of tg) {
      assert.ok(compose.services[name], `prometheus.yml job ${job} scrapes compose service ${name}, which does not exist`);
      if (role) assert.equal(roleOf(name), role, `prometheus.yml job ${job} scrapes ${name}, which runs --role ${roleOf(name)}`);
      assert.equal(p, port, `prometheus.yml job ${job} scrapes ${name} on port ${p}`);
    }
  }
  assert.ok(targets(PROMETHEUS_JOBS.gpu).some(([n]) => n === COMPOSE.worker), `prometheus.yml job ${PROMETHEUS_JOBS.gpu} scrapes ${COMPOSE.worker}`);
  const mounted = (compose.services.prometheus.volumes as string[]).some((v) => v.startsWith("./prometheus:/etc/prometheus"));
  assert.ok(mounted, "compose mounts infra/prometheus at /etc/prometheus");
});

test("compose mounts: Prometheus and Grafana get the repository's config at the paths their files name", (t) => {
  const compose = composeFile();
  const binds = (service: string): [string, string][] =>
    ((compose.services[service].volumes ?? []) as string[]).filter((v) => v.startsWith("./")).map((v) => v.split(":").slice(0, 2) as [string, string]);
  for (const service of ["prometheus", "grafana"]) {
    if (!existsSync(join(ROOT, "infra", service))) {
      t.diagnostic(`infra/${service} missing: its mounts not checked`);
      continue;
    }
    for (const [src] of binds(service)) assert.ok(existsSync(join(ROOT, "infra", src)), `compose ${service} mounts infra/${src.slice(2)}, which does not exist`);
  }
  const providers = join(ROOT, "infra/grafana/provisioning/dashboards");
  if (existsSync(providers)) {
    const dashboardsMount = binds("grafana").find(([src]) => src === "./grafana/dashboards")?.[1];
    for (const f of readdirSync(providers).filter((x) => /\.ya?ml$/.test(x))) {
      for (const p of ((parseYaml(readFileSync(join(providers, f), "utf8")) as Obj).providers ?? []) as Obj[]) {
        assert.equal(p.options?.path, dashboardsMount, `infra/grafana/provisioning/dashboards/${f}: provider path = where compose mounts infra/grafana/dashboards`);
      }
    }
  }
  const datasources = join(ROOT, "infra/grafana/provisioning/datasources");
  if (existsSync(datasources)) {
    for (const f of readdirSync(datasources).filter((x) => /\.ya?ml$/.test(x))) {
      for (const d of ((parseYaml(readFileSync(join(datasources, f), "utf8")) as Obj).datasources ?? []) as Obj[]) {
        if (d.type !== "prometheus") continue;
        const url = new URL(d.url as string);
        assert.ok(compose.services[url.hostname], `datasource ${d.name} points at ${url.hostname}, not a compose service`);
        assert.equal(url.port, "9090", `datasource ${d.name}: Prometheus' port`);
      }
    }
  }
});

test("environment variables: every name the deployment sets is read by the code; required ones are set everywhere", (t) => {
  if (!needValidators(t)) return;
  const read = facts.envReadByCode();
  t.diagnostic(`env names from ${read.source}`);
  const check = (where: string, names: string[]): void => {
    for (const n of names) {
      assert.ok(read.value.has(n) || n in ENV_NOT_READ_BY_CODE, `${where} sets ${n}, which no metatrain code reads (typo or renamed? known others: ${Object.keys(ENV_NOT_READ_BY_CODE).join(", ")})`);
    }
  };
  const checkRequired = (where: string, names: string[]): void => {
    for (const n of REQUIRED_WORKER_ENV) assert.ok(names.includes(n), `${where} does not set ${n}`);
  };

  for (const [path, stages] of dockerfiles()) check(path, [...facts.stageEnv(stages.at(-1)!).keys()]);

  for (const overlay of OVERLAYS) {
    const docs = rendered(overlay);
    const cm = find(docs, "ConfigMap", K8S.configMap);
    check(`${overlay} ConfigMap ${K8S.configMap}`, Object.keys(cm.data as Obj));
    for (const name of [K8S.gpuWorker, K8S.coordinator]) {
      const c = workerContainer(find(docs, "Deployment", name));
      const names = (c.env as Obj[]).map((e) => e.name as string);
      check(`${overlay} ${name}`, names);
      checkRequired(`${overlay} ${name}`, names);
      assert.equal(new Set(names).size, names.length, `${overlay} ${name}: an env name appears twice`);
      for (const e of c.env as Obj[]) {
        const ref = e.valueFrom?.configMapKeyRef;
        if (ref && !ref.optional) assert.ok(ref.key in cm.data, `${overlay} ${name}: ${e.name} refers to missing ConfigMap key ${ref.key}`);
        if (ref) assert.equal(ref.name, K8S.configMap);
      }
    }
    // KEDA reads *FromEnv parameters from the scale target's container.
    const so = docs.find((x) => x.kind === "ScaledObject");
    if (so) {
      const c = workerContainer(find(docs, "Deployment", so.spec.scaleTargetRef.name));
      assert.equal(so.spec.scaleTargetRef.envSourceContainerName, c.name);
      for (const [k, v] of Object.entries(so.spec.triggers[0].metadata as Obj)) {
        if (k.endsWith("FromEnv")) assert.ok(envValue(c, v as string), `${overlay}: ScaledObject ${k}=${v} is not in the worker's env`);
      }
    }
  }

  const job = parseYaml(readFileSync(join(ROOT, "k8s/examples/submit-job.yaml"), "utf8")) as Obj;
  check("k8s/examples/submit-job.yaml", ((job.spec.template.spec.containers[0].env ?? []) as Obj[]).map((e) => e.name as string));
  assert.deepEqual(job.spec.template.spec.containers[0].envFrom, [{ configMapRef: { name: K8S.configMap } }]);

  for (const [name, s] of metatrainServices(composeFile())) {
    const names = Object.keys(s.environment as Obj);
    check(`compose ${name}`, names);
    checkRequired(`compose ${name}`, names);
  }
});

test("Temporal: the KEDA trigger watches the code's gpu task queue (activity tasks) and counts running runs on the coordinator queue, in the workers' namespace", async (t) => {
  if (!needValidators(t)) return;
  const queues = await facts.taskQueues();
  t.diagnostic(`task queues from ${queues.source}`);
  for (const overlay of GPU_OVERLAYS) {
    const docs = rendered(overlay);
    const so = find(docs, "ScaledObject", K8S.gpuWorker);
    assert.equal(so.spec.scaleTargetRef.name, K8S.gpuWorker);
    const trig = (so.spec.triggers as Obj[]).filter((x) => x.type === "temporal");
    assert.equal(trig.length, 1, `${overlay}: one temporal trigger`);
    const m = trig[0]!.metadata as Obj;
    assert.equal(m.taskQueue, queues.value.gpu, `${overlay}: taskQueue`);
    assert.equal(m.queueTypes, "activity", `${overlay}: the gpu queue carries activity tasks only`);
    // A run between rounds has an empty gpu backlog: its running workflow on the coordinator queue counts instead.
    assert.equal(m.includeRunningWorkflowCount, "true", `${overlay}: running runs keep their workers`);
    assert.equal(m.workflowTaskQueueForCount, queues.value.coordinator, `${overlay}: running workflows counted on the coordinator queue`);
    assert.equal(m.namespace, find(docs, "ConfigMap", K8S.configMap).data.TEMPORAL_NAMESPACE, `${overlay}: trigger namespace = workers' TEMPORAL_NAMESPACE`);
    assert.equal(m.endpointFromEnv, "TEMPORAL_ADDRESS", `${overlay}: endpoint from the workers' TEMPORAL_ADDRESS`);
  }
  assert.equal(rendered("local").some((x) => x.kind === "ScaledObject"), false, "local has no KEDA");
  const tc = workerContainer(find(rendered("temporal-cloud"), "Deployment", K8S.gpuWorker));
  assert.equal(envValue(tc, "TEMPORAL_API_KEY")?.valueFrom?.secretKeyRef?.optional, false, "temporal-cloud requires the API key Secret");
  assert.equal(find(rendered("temporal-cloud"), "ScaledObject", K8S.gpuWorker).spec.triggers[0].metadata.apiKeyFromEnv, "TEMPORAL_API_KEY");

  // mTLS: the certificate paths the workers read lie in the mounted Secret KEDA authenticates with.
  const mtls = rendered("temporal-mtls");
  const auth = find(mtls, "TriggerAuthentication", find(mtls, "ScaledObject", K8S.gpuWorker).spec.triggers[0].authenticationRef.name);
  const authKeys = new Map((auth.spec.secretTargetRef as Obj[]).map((r) => [r.parameter, `${r.name}/${r.key}`]));
  for (const name of [K8S.gpuWorker, K8S.coordinator]) {
    const d = find(mtls, "Deployment", name);
    const c = workerContainer(d);
    for (const [variable, parameter] of [["TEMPORAL_TLS_CERT_PATH", "cert"], ["TEMPORAL_TLS_KEY_PATH", "key"]] as const) {
      const path = envValue(c, variable)?.value as string;
      const mount = (c.volumeMounts as Obj[]).find((m) => path?.startsWith(`${m.mountPath}/`));
      assert.ok(mount, `temporal-mtls ${name}: ${variable}=${path} is not under a mounted volume`);
      const vol = (d.spec.template.spec.volumes as Obj[]).find((v) => v.name === mount.name);
      assert.equal(vol?.secret?.optional, false, `temporal-mtls ${name}: the TLS Secret is required`);
      assert.equal(`${vol.secret.secretName}/${path.slice(mount.mountPath.length + 1)}`, authKeys.get(parameter), `temporal-mtls ${name}: ${variable} and KEDA's ${parameter} use the same Secret key`);
    }
  }

  // The KEDA-less fallback scales the same Deployment.
  const hpa = parseYaml(readFileSync(join(ROOT, "k8s/examples/hpa-prometheus-adapter.yaml"), "utf8")) as Obj;
  assert.equal(hpa.spec.scaleTargetRef.name, K8S.gpuWorker);
  assert.equal(hpa.metadata.namespace, K8S.namespace);
});

/** Seconds a worker needs after its grace to report cancelled shards and close its connection. */
const EXIT_SECONDS = 30;

test("graceful shutdown: a GPU worker hands its shards back at once, a coordinator's drain outlasts a coordinator activity (K8s and compose)", async (t) => {
  if (!needValidators(t)) return;
  const timeouts = await facts.timeoutDefaults();
  t.diagnostic(`coordinator activity timeout ${timeouts.value.coordinator}s from ${timeouts.source}`);
  for (const overlay of OVERLAYS) {
    const docs = rendered(overlay);
    const gpu = find(docs, "Deployment", K8S.gpuWorker);
    const gpuGrace = Number(envValue(workerContainer(gpu), "METATRAIN_GPU_SHUTDOWN_GRACE_SECONDS")?.value);
    assert.equal(gpuGrace, 0, `${overlay} ${K8S.gpuWorker}: METATRAIN_GPU_SHUTDOWN_GRACE_SECONDS hands shards back at once`);
    assert.equal(envValue(workerContainer(gpu), "METATRAIN_SHUTDOWN_GRACE_SECONDS"), undefined, `${overlay} ${K8S.gpuWorker}: no coordinator grace on a gpu worker`);
    assert.ok((gpu.spec.template.spec.terminationGracePeriodSeconds as number) >= gpuGrace + EXIT_SECONDS, `${overlay} ${K8S.gpuWorker}: terminationGracePeriodSeconds`);
    const coordinator = find(docs, "Deployment", K8S.coordinator);
    const grace = Number(envValue(workerContainer(coordinator), "METATRAIN_SHUTDOWN_GRACE_SECONDS")?.value);
    const kill = coordinator.spec.template.spec.terminationGracePeriodSeconds as number;
    assert.ok(grace >= timeouts.value.coordinator, `${overlay} ${K8S.coordinator}: METATRAIN_SHUTDOWN_GRACE_SECONDS ${grace} < activity timeout ${timeouts.value.coordinator}`);
    assert.ok(kill > grace, `${overlay} ${K8S.coordinator}: terminationGracePeriodSeconds ${kill} must exceed the worker's own grace ${grace}`);
  }
  const compose = composeFile();
  for (const name of [COMPOSE.worker, COMPOSE.gpuWorker]) {
    const s = compose.services[name] as Obj;
    const grace = Number(s.environment.METATRAIN_GPU_SHUTDOWN_GRACE_SECONDS);
    assert.ok(grace === 0 && facts.composeDurationSeconds(s.stop_grace_period) >= EXIT_SECONDS, `compose ${name}: gpu grace ${grace}s, stop_grace_period ${s.stop_grace_period}`);
  }
  const s = compose.services[COMPOSE.coordinator] as Obj;
  const grace = Number(s.environment.METATRAIN_SHUTDOWN_GRACE_SECONDS);
  assert.ok(grace >= timeouts.value.coordinator && facts.composeDurationSeconds(s.stop_grace_period) > grace, `compose coordinator: grace ${grace}s, stop_grace_period ${s.stop_grace_period}`);
});

/** Pod hardening: non-root (the images' uid), seccomp, no API token, read-only root with a writable /tmp, no privileges, limits, Secrets by reference. */
function checkPod(id: string, pod: Obj): void {
  assert.equal(pod.securityContext?.runAsNonRoot, true, `${id}: runAsNonRoot`);
  assert.equal(pod.securityContext?.seccompProfile?.type, "RuntimeDefault", `${id}: seccomp`);
  assert.equal(pod.automountServiceAccountToken, false, `${id}: no API token`);
  for (const c of pod.containers as Obj[]) {
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${id}/${c.name}: allowPrivilegeEscalation`);
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${id}/${c.name}: readOnlyRootFilesystem`);
    assert.deepEqual(c.securityContext?.capabilities?.drop, ["ALL"], `${id}/${c.name}: drop ALL`);
    assert.ok((c.volumeMounts as Obj[] | undefined)?.some((m) => m.mountPath === "/tmp"), `${id}/${c.name}: writable /tmp`);
    assert.ok(c.resources?.requests && c.resources?.limits?.memory, `${id}/${c.name}: requests and a memory limit`);
    for (const e of (c.env ?? []) as Obj[]) {
      if (/SECRET|PASSWORD|API_KEY|TOKEN/.test(e.name)) assert.ok(e.valueFrom?.secretKeyRef, `${id}/${c.name}: ${e.name} must come from a Secret`);
    }
  }
  if (String((pod.containers as Obj[])[0]!.image).includes("metatrain")) {
    assert.equal(pod.securityContext.runAsUser, K8S.uid, `${id}: runAsUser = the image's USER`);
  }
}

test("scheduling and hardening: GPUs requested where there are GPUs; every pod non-root, read-only, no privileges; no literal secrets", (t) => {
  if (!needValidators(t)) return;
  for (const overlay of OVERLAYS) {
    const docs = rendered(overlay);
    const gpu = find(docs, "Deployment", K8S.gpuWorker);
    const res = workerContainer(gpu).resources as Obj;
    if ((GPU_OVERLAYS as readonly string[]).includes(overlay)) {
      assert.equal(res.limits["nvidia.com/gpu"], 1, `${overlay}: one GPU per worker`);
      assert.equal(res.requests["nvidia.com/gpu"], res.limits["nvidia.com/gpu"], `${overlay}: GPU request = limit`);
      assert.equal(gpu.spec.template.spec.nodeSelector["nvidia.com/gpu.present"], "true");
      assert.ok((gpu.spec.template.spec.tolerations as Obj[]).some((x) => x.key === "nvidia.com/gpu"));
      assert.equal(envValue(workerContainer(gpu), "METATRAIN_BACKEND")?.value, "tfjs-node-gpu");
      assert.equal(gpu.spec.replicas, undefined, `${overlay}: KEDA / kubectl scale own the GPU replica count`);
      assert.ok(docs.some((x) => x.kind === "PodDisruptionBudget" && x.metadata.name === K8S.gpuWorker));
    } else {
      assert.equal(res.limits?.["nvidia.com/gpu"] ?? res.requests?.["nvidia.com/gpu"], undefined, `${overlay}: no GPU`);
    }
    assert.equal(docs.some((x) => x.kind === "Secret"), false, `${overlay}: Secrets are created outside the repo`);
    for (const d of docs.filter((x) => ["Deployment", "Job"].includes(x.kind))) checkPod(`${overlay} ${d.kind}/${d.metadata.name}`, d.spec.template.spec as Obj);
  }
  checkPod("k8s/examples/submit-job.yaml", (parseYaml(readFileSync(join(ROOT, "k8s/examples/submit-job.yaml"), "utf8")) as Obj).spec.template.spec as Obj);
  for (const [path, stages] of dockerfiles()) {
    const user = stages.at(-1)!.instructions.filter((i) => i.op === "USER").at(-1)?.args;
    assert.equal(user, `${K8S.uid}:${K8S.uid}`, `${path}: numeric non-root USER (runAsNonRoot can verify it)`);
  }
  for (const [name, s] of metatrainServices(composeFile())) {
    assert.equal(s.read_only, true, `compose ${name}: read_only`);
    assert.deepEqual(s.cap_drop, ["ALL"], `compose ${name}: cap_drop`);
    assert.equal(s.user, `${K8S.uid}:${K8S.uid}`, `compose ${name}: user`);
  }
});
