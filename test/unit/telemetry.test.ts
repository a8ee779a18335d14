// Telemetry: naming, unit and label rules over the whole registry; what each port call exports; the /metrics server; sinks, store wrapper, no-op port; dashboard and rules refer only to real metrics.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { Registry } from "prom-client";
import {
  MAX_LABEL_VALUES, RUN_STATES, TEMPORAL_SDK_METRICS, createMetrics, instrumentStore, metricsPortFromEnv, metricsSinks, noopMetrics,
  recordingMetrics, startMetricsServer, storeKindOf, temporalMetricsPortFromEnv, temporalRuntimeTelemetry, type Metrics, type MetricsPort,
} from "../../telemetry/index.js";
import { dashboardQueries, substituteVariables } from "../harness/prometheus.js";

const repoFile = (p: string): string => readFileSync(new URL(`../../${p}`, import.meta.url), "utf8");

/** Metrics over a fresh registry with a controllable clock. */
function fresh(opts: { runTtlSeconds?: number; maxRuns?: number } = {}) {
  let now = 0;
  const metrics = createMetrics({
    registry: new Registry(),
    defaultLabels: { role: "gpu", worker: "w1" },
    tfMemory: () => ({ numTensors: 42, numBytes: 4096 }),
    monotonicMs: () => now,
    wallMs: () => 1_700_000_000_000 + now,
    ...opts,
  });
  return { metrics, advance: (ms: number) => (now += ms) };
}

/** Every port method called once, so every labelled metric has a series. */
function exercise(m: Metrics): void {
  m.setBackend("wasm");
  m.observeTask({ algorithm: "maml", backend: "wasm", seconds: 0.14, innerSteps: 5 });
  m.observeShard({ algorithm: "maml", backend: "wasm", seconds: 1.5, tasks: 4, outcome: "completed" });
  m.observeShard({ algorithm: "maml", backend: "wasm", seconds: 0.5, tasks: 4, outcome: "failed", errorType: "BlobCorrupt", attempt: 2 });
  m.observeShard({ algorithm: "maml", backend: "wasm", seconds: 0.2, tasks: 4, outcome: "cancelled" });
  m.observeOuterStep({ algorithm: "maml", seconds: 0.05 });
  m.setRunProgress({ runId: "run-1", iteration: 1, iterations: 10, latest: { preLoss: 1.6, postLoss: 0.8, preAccuracy: 0.2, postAccuracy: 0.7 } });
  m.observeEvaluation({ runId: "run-1", iteration: 1, loss: { mean: 0.9, ci95: 0.05, n: 100 }, accuracy: { mean: 0.72, ci95: 0.03, n: 100 } });
  m.observeStorage("get", 1024, 0.002, { store: "s3" });
  m.observeStorage("put", 2048, 0.004, { store: "s3" });
  m.observeStorage("get", 0, 0.001, { store: "s3", ok: false });
  m.observeCheckpoint(0.02, 1500);
  m.observeParamsCache(true);
  m.observeParamsCache(false);
  m.observeParamsCacheEviction();
  m.watchWorker({ taskQueue: "metatrain-gpu", slots: 2, inFlight: () => 1 });
}

/** `name{labels} value` lines of the exposition text, as [name, labels, value]. */
function samples(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function value(m: Metrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const hit = samples(await m.text()).find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return hit?.value;
}

// Labels a metatrain metric may carry, and the ones it never may.
const ALLOWED_LABELS = new Set(["algorithm", "backend", "outcome", "error_type", "run_id", "phase", "state", "operation", "store", "task_queue", "role", "worker", "le"]);
const FORBIDDEN_LABEL = /index|key|iteration|task_id|shard|seed/;

describe("metric names, units and labels (whole registry)", () => {
  test("every metatrain metric follows the naming rules", async () => {
    const { metrics } = fresh();
    exercise(metrics);
    const all = await metrics.registry.getMetricsAsJSON();
    const own = all.filter((x) => x.name.startsWith("metatrain_"));
    assert.ok(own.length >= 35, `expected the full catalogue, got ${own.length} metatrain metrics`);
    for (const x of all) {
      assert.match(x.name, /^(metatrain_|process_|nodejs_)/, `${x.name}: only metatrain_ metrics and prom-client's default process/nodejs metrics belong in the registry`);
    }
    for (const x of own) {
      const type = String(x.type);
      assert.ok(x.help.length > 20, `${x.name}: help text says what it measures`);
      assert.match(x.name, /^metatrain_[a-z0-9]+(_[a-z0-9]+)*$/, `${x.name}: snake_case`);
      if (type === "counter") assert.match(x.name, /_total$/, `${x.name}: counters end in _total`);
      else assert.doesNotMatch(x.name, /_total$/, `${x.name}: only counters end in _total`);
      if (/duration|latency/.test(x.name)) assert.match(x.name, /_seconds$/, `${x.name}: durations are in seconds`);
      if (/size|memory|bytes/.test(x.name)) assert.match(x.name, /_bytes$/, `${x.name}: sizes are in bytes`);
      if (/accuracy/.test(x.name)) assert.match(x.name, /_ratio$/, `${x.name}: accuracies are ratios in 0..1`);
      if (/_seconds$/.test(x.name) && type !== "histogram") assert.match(x.name, /timestamp_seconds$/, `${x.name}: a duration is a histogram`);
      for (const v of x.values) {
        for (const label of Object.keys(v.labels)) {
          assert.ok(ALLOWED_LABELS.has(label), `${x.name}: label ${label} is not in the bounded set`);
          assert.doesNotMatch(label, FORBIDDEN_LABEL, `${x.name}: label ${label} would be unbounded`);
          if (label === "run_id") assert.equal(type, "gauge", `${x.name}: run_id only on run-level gauges`);
        }
        assert.equal(v.labels.role, "gpu", `${x.name}: default labels on every series`);
        assert.equal(v.labels.worker, "w1");
      }
    }
  });

  test("a label fed unbounded values stays bounded", async () => {
    const { metrics } = fresh();
    for (let i = 0; i < 200; i++) {
      metrics.observeTask({ algorithm: `algo-${i}`, backend: "wasm", seconds: 0.1, innerSteps: 1 });
      metrics.observeShard({ algorithm: "maml", backend: "wasm", seconds: 1, tasks: 1, outcome: "failed", errorType: `Error${i}` });
    }
    metrics.observeShard({ algorithm: "maml", backend: "wasm", seconds: 1, tasks: 1, outcome: "failed", errorType: "not a type name!" });
    const s = samples(await metrics.text());
    const algorithms = new Set(s.filter((x) => x.name === "metatrain_inner_steps_total").map((x) => x.labels.algorithm));
    // The algorithm label's 32 values: algo-0, maml (from observeShard), algo-1 … algo-30; the rest are `other`.
    assert.equal(algorithms.size, MAX_LABEL_VALUES, "the first values pass, the rest are `other`");
    assert.ok(algorithms.has("algo-30") && !algorithms.has("algo-31"));
    assert.ok(algorithms.has("other"));
    const errorTypes = new Set(s.filter((x) => x.name === "metatrain_shards_failed_total").map((x) => x.labels.error_type));
    assert.ok(errorTypes.size <= MAX_LABEL_VALUES + 2, `error types capped, got ${errorTypes.size}`);
    assert.ok(errorTypes.has("Other"), "a malformed error type is reported as Other");
  });

  test("run-level series are capped at maxRuns (least recently reported dropped) and expire after runTtlSeconds", async () => {
    const { metrics, advance } = fresh({ maxRuns: 3, runTtlSeconds: 60 });
    for (let i = 0; i < 5; i++) {
      metrics.setRunProgress({ runId: `r${i}`, iteration: 1, iterations: 5 });
      advance(1000);
    }
    assert.deepEqual(metrics.runs(), ["r2", "r3", "r4"]);
    const ids = new Set(samples(await metrics.text()).filter((x) => x.labels.run_id).map((x) => x.labels.run_id));
    assert.deepEqual([...ids].sort(), ["r2", "r3", "r4"]);
    metrics.setRunState("r2", "paused"); // r2 reported on again: now the most recent
    advance(59_500);
    await metrics.text(); // a scrape prunes
    assert.deepEqual(metrics.runs(), ["r2"], "r3 and r4 were last reported over 60 s ago");
    advance(1000);
    assert.equal(samples(await metrics.text()).filter((x) => x.labels.run_id).length, 0, "an idle process drops expired runs at scrape time");
  });

  test("a run id unfit as a label value is ignored, not exported", async () => {
    const { metrics } = fresh();
    metrics.setRunProgress({ runId: "bad id with spaces", iteration: 1, iterations: 2 });
    metrics.setRunProgress({ runId: "x".repeat(300), iteration: 1, iterations: 2 });
    assert.deepEqual(metrics.runs(), []);
  });
});

describe("what the port exports", () => {
  test("shards: tasks counted once per completed shard, failures and retries apart, counters start at 0", async () => {
    const { metrics } = fresh();
    metrics.observeShard({ algorithm: "fomaml", backend: "cpu", seconds: 2, tasks: 8, outcome: "completed" });
    assert.equal(await value(metrics, "metatrain_tasks_failed_total", { algorithm: "fomaml" }), 0, "present at 0 before any failure");
    assert.equal(await value(metrics, "metatrain_shard_retries_total", { algorithm: "fomaml" }), 0);
    metrics.observeShard({ algorithm: "fomaml", backend: "cpu", seconds: 1, tasks: 8, outcome: "failed", errorType: "NonFiniteLoss" });
    metrics.observeShard({ algorithm: "fomaml", backend: "cpu", seconds: 2, tasks: 8, outcome: "completed", attempt: 2 });
    metrics.observeShard({ algorithm: "fomaml", backend: "cpu", seconds: 2, tasks: 8, outcome: "cancelled" });
    assert.equal(await value(metrics, "metatrain_tasks_completed_total"), 16);
    assert.equal(await value(metrics, "metatrain_tasks_failed_total"), 8);
    assert.equal(await value(metrics, "metatrain_shards_completed_total"), 2);
    assert.equal(await value(metrics, "metatrain_shards_failed_total", { error_type: "NonFiniteLoss" }), 1);
    assert.equal(await value(metrics, "metatrain_shards_cancelled_total"), 1);
    assert.equal(await value(metrics, "metatrain_shard_retries_total"), 1);
    assert.equal(await value(metrics, "metatrain_shard_duration_seconds_count", { outcome: "completed" }), 2);
  });

  test("tasks: inner-loop histogram and inner steps", async () => {
    const { metrics } = fresh();
    for (const s of [0.1, 0.2, 0.3]) metrics.observeTask({ algorithm: "reptile", backend: "wasm", seconds: s, innerSteps: 5 });
    assert.equal(await value(metrics, "metatrain_inner_steps_total", { algorithm: "reptile", backend: "wasm" }), 15);
    assert.equal(await value(metrics, "metatrain_inner_loop_duration_seconds_count"), 3);
    assert.ok(Math.abs((await value(metrics, "metatrain_inner_loop_duration_seconds_sum"))! - 0.6) < 1e-12);
    // 0.1 and 0.2 fall in le=0.25; 0.3 does not.
    assert.equal(await value(metrics, "metatrain_inner_loop_duration_seconds_bucket", { le: "0.25" }), 2);
    // A batch of 4 tasks in 0.4 s: four observations of 0.1 s, 4 × 5 inner steps.
    metrics.observeTask({ algorithm: "reptile", backend: "wasm", seconds: 0.4, innerSteps: 5, tasks: 4 });
    assert.equal(await value(metrics, "metatrain_inner_loop_duration_seconds_count"), 7);
    assert.equal(await value(metrics, "metatrain_inner_loop_duration_seconds_bucket", { le: "0.1" }), 5);
    assert.equal(await value(metrics, "metatrain_inner_steps_total", { algorithm: "reptile", backend: "wasm" }), 35);
  });

  test("run progress: iteration, total, state, latest losses; iteration durations only between consecutive reports", async () => {
    const { metrics, advance } = fresh();
    metrics.setRunProgress({ runId: "r", iteration: 1, iterations: 3, latest: { preLoss: 2, postLoss: 1 } });
    advance(5000);
    metrics.setRunProgress({ runId: "r", iteration: 2, iterations: 3, latest: { preLoss: 1.5, postLoss: 0.5, preAccuracy: 0.3, postAccuracy: 0.8 } });
    metrics.setRunProgress({ runId: "r", iteration: 2, iterations: 3 }); // the activity and the sink both report: not timed twice
    advance(1000);
    metrics.setRunProgress({ runId: "r", iteration: 2, iterations: 3, latest: { preLoss: NaN, postLoss: Infinity } });
    assert.equal(await value(metrics, "metatrain_meta_iteration", { run_id: "r" }), 2);
    assert.equal(await value(metrics, "metatrain_run_iterations", { run_id: "r" }), 3);
    assert.equal(await value(metrics, "metatrain_run_state", { run_id: "r", state: "running" }), 1);
    assert.equal(await value(metrics, "metatrain_iteration_loss", { run_id: "r", phase: "pre" }), 1.5, "a non-finite loss keeps the last good value");
    assert.equal(await value(metrics, "metatrain_iteration_loss", { run_id: "r", phase: "post" }), 0.5);
    assert.equal(await value(metrics, "metatrain_iteration_accuracy_ratio", { run_id: "r", phase: "post" }), 0.8);
    assert.equal(await value(metrics, "metatrain_meta_iteration_duration_seconds_count"), 1);
    assert.equal(await value(metrics, "metatrain_meta_iteration_duration_seconds_sum"), 5);
    assert.equal(await value(metrics, "metatrain_run_updated_timestamp_seconds", { run_id: "r" }), 1_700_000_006);

    metrics.setRunState("r", "paused");
    advance(1000);
    metrics.setRunProgress({ runId: "r", iteration: 3 - 0, iterations: 5 }); // the in-flight iteration lands while paused
    assert.equal(await value(metrics, "metatrain_run_state", { run_id: "r", state: "paused" }), 1, "stays paused until resumed");
    metrics.setRunProgress({ runId: "r", iteration: 5, iterations: 5 });
    assert.equal(await value(metrics, "metatrain_meta_iteration_duration_seconds_count"), 2, "a jump of iterations (another coordinator ran them) is not timed");
    for (const s of RUN_STATES) assert.equal(await value(metrics, "metatrain_run_state", { run_id: "r", state: s }), s === "finished" ? 1 : 0);
  });

  test("evaluation: mean and CI half-width of loss and accuracy", async () => {
    const { metrics } = fresh();
    metrics.observeEvaluation({ runId: "r", iteration: 10, loss: { mean: 0.4, ci95: 0.02, n: 600 } });
    assert.equal(await value(metrics, "metatrain_evaluation_loss", { run_id: "r" }), 0.4);
    assert.equal(await value(metrics, "metatrain_evaluation_accuracy_ratio", { run_id: "r" }), undefined, "regression runs have no accuracy");
    metrics.observeEvaluation({ runId: "r", iteration: 20, loss: { mean: 0.3, ci95: 0.02, n: 600 }, accuracy: { mean: 0.95, ci95: 0.01, n: 600 } });
    assert.equal(await value(metrics, "metatrain_evaluation_iteration", { run_id: "r" }), 20);
    assert.equal(await value(metrics, "metatrain_evaluation_tasks", { run_id: "r" }), 600);
    assert.equal(await value(metrics, "metatrain_evaluation_accuracy_ratio", { run_id: "r" }), 0.95);
    assert.equal(await value(metrics, "metatrain_evaluation_accuracy_ci95_ratio", { run_id: "r" }), 0.01);
  });

  test("worker health: backend info, activities in flight against slots, tfjs memory read at scrape time", async () => {
    let tensors = 10;
    const metrics = createMetrics({ registry: new Registry(), defaultMetrics: false, tfMemory: () => ({ numTensors: tensors, numBytes: tensors * 4 }) });
    metrics.setBackend("cpu");
    metrics.setBackend("wasm");
    let busy = 1;
    const unwatch = metrics.watchWorker({ taskQueue: "metatrain-gpu", slots: 2, inFlight: () => busy });
    const done = metrics.trackActivity("metatrain-coordinator");
    assert.equal(await value(metrics, "metatrain_backend_info", { backend: "wasm" }), 1);
    assert.equal(await value(metrics, "metatrain_backend_info", { backend: "cpu" }), undefined, "the previous backend is removed");
    assert.equal(await value(metrics, "metatrain_activities_in_flight", { task_queue: "metatrain-gpu" }), 1);
    assert.equal(await value(metrics, "metatrain_activity_slots", { task_queue: "metatrain-gpu" }), 2);
    assert.equal(await value(metrics, "metatrain_activities_in_flight", { task_queue: "metatrain-coordinator" }), 1);
    assert.equal(await value(metrics, "metatrain_tfjs_tensors"), 10);
    tensors = 12;
    busy = 2;
    done();
    done(); // twice is harmless
    assert.equal(await value(metrics, "metatrain_tfjs_tensors"), 12);
    assert.equal(await value(metrics, "metatrain_tfjs_memory_bytes"), 48);
    assert.equal(await value(metrics, "metatrain_activities_in_flight", { task_queue: "metatrain-gpu" }), 2);
    assert.equal(await value(metrics, "metatrain_activities_in_flight", { task_queue: "metatrain-coordinator" }), 0);
    unwatch();
    assert.equal(await value(metrics, "metatrain_activity_slots", { task_queue: "metatrain-gpu" }), undefined);
  });

  test("without tfMemory the tfjs gauges are not registered; default process metrics are", async () => {
    const metrics = createMetrics({ registry: new Registry() });
    const names = (await metrics.registry.getMetricsAsJSON()).map((x) => x.name);
    assert.ok(!names.includes("metatrain_tfjs_tensors"));
    assert.ok(names.includes("process_resident_memory_bytes"));
  });

  test("instrumentStore times every operation and counts bytes and errors", async () => {
    const { metrics } = fresh();
    const blobs = new Map<string, Uint8Array>();
    const store = instrumentStore(
      {
        put: async (k: string, b: Uint8Array) => void blobs.set(k, b),
        get: async (k: string) => {
          const b = blobs.get(k);
          if (!b) throw new Error(`not found: ${k}`);
          return b;
        },
        exists: async (k: string) => blobs.has(k),
        list: async (p: string) => [...blobs.keys()].filter((k) => k.startsWith(p)),
        delete: async (k: string) => void blobs.delete(k),
        describe: () => "memory",
      },
      metrics,
      "memory",
    );
    await store.put("a", new Uint8Array(300));
    assert.equal((await store.get("a")).byteLength, 300);
    assert.equal(await store.exists("a"), true);
    await assert.rejects(store.get("missing"), /not found/);
    assert.equal(store.describe(), "memory");
    assert.equal(await value(metrics, "metatrain_storage_object_size_bytes_sum", { operation: "put", store: "memory" }), 300);
    assert.equal(await value(metrics, "metatrain_storage_object_size_bytes_count", { operation: "get", store: "memory" }), 1, "a failed get moves no bytes");
    assert.equal(await value(metrics, "metatrain_storage_operation_duration_seconds_count", { operation: "get", store: "memory" }), 2);
    assert.equal(await value(metrics, "metatrain_storage_errors_total", { operation: "get", store: "memory" }), 1);
    assert.equal(await value(metrics, "metatrain_storage_errors_total", { operation: "put", store: "memory" }), 0);
    assert.equal(storeKindOf("s3://bucket/p"), "s3");
    assert.equal(storeKindOf("file:///tmp/x"), "fs");
  });

  test("workflow sinks forward to the port and are skipped on replay", async () => {
    const { metrics } = fresh();
    const sinks = metricsSinks(metrics);
    const info = {} as never;
    sinks.metatrainMetrics.progress.fn(info, { runId: "s", iteration: 4, iterations: 8, latest: { preLoss: 1, postLoss: 0.5 } });
    sinks.metatrainMetrics.evaluation.fn(info, { runId: "s", iteration: 4, loss: { mean: 0.6, ci95: 0.1, n: 10 } });
    sinks.metatrainMetrics.state.fn(info, "s", "cancelled");
    assert.equal(await value(metrics, "metatrain_meta_iteration", { run_id: "s" }), 4);
    assert.equal(await value(metrics, "metatrain_evaluation_loss", { run_id: "s" }), 0.6);
    assert.equal(await value(metrics, "metatrain_run_state", { run_id: "s", state: "cancelled" }), 1);
    for (const f of Object.values(sinks.metatrainMetrics)) assert.equal(f.callDuringReplay, false);
  });
});

describe("no-op and recording ports", () => {
  test("noopMetrics and recordingMetrics implement every MetricsPort method of createMetrics", () => {
    const { metrics } = fresh();
    const portMethods = Object.keys(noopMetrics).sort();
    for (const k of portMethods) assert.equal(typeof (metrics as unknown as Record<string, unknown>)[k], "function", `createMetrics lacks ${k}`);
    const rec = recordingMetrics();
    assert.deepEqual(Object.keys(rec).filter((k) => k !== "calls").sort(), portMethods);
    const port: MetricsPort = rec;
    port.observeCheckpoint(1, 2);
    port.observeParamsCache(true);
    assert.deepEqual(rec.calls, [
      { method: "observeCheckpoint", args: [1, 2] },
      { method: "observeParamsCache", args: [true] },
    ]);
    assert.doesNotThrow(() => noopMetrics.observeShard({ algorithm: "maml", backend: "cpu", seconds: 1, tasks: 1, outcome: "completed" }));
    assert.ok(Object.isFrozen(noopMetrics));
  });
});

describe("the /metrics server", () => {
  test("serves /metrics in the registry's content type and /healthz by readiness", async () => {
    const { metrics } = fresh();
    exercise(metrics);
    let ready = false;
    const server = await startMetricsServer({ registry: metrics.registry, port: 0, host: "127.0.0.1", ready: () => ready });
    try {
      assert.ok(server.port > 0);
      const res = await fetch(`${server.url}/metrics`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), metrics.registry.contentType);
      const body = await res.text();
      assert.match(body, /^# HELP metatrain_meta_iteration /m);
      assert.match(body, /^process_resident_memory_bytes\{role="gpu",worker="w1"\} \d+/m);
      assert.equal((await fetch(`${server.url}/healthz`)).status, 503);
      ready = true;
      const ok = await fetch(`${server.url}/healthz`);
      assert.equal(ok.status, 200);
      assert.equal(await ok.text(), "ok\n");
      assert.equal((await fetch(`${server.url}/metrics?x=1`)).status, 200, "query strings are ignored");
      assert.equal((await fetch(`${server.url}/nope`)).status, 404);
      const post = await fetch(`${server.url}/metrics`, { method: "POST" });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get("allow"), "GET, HEAD");
      const head = await fetch(`${server.url}/metrics`, { method: "HEAD" });
      assert.equal(head.status, 200);
    } finally {
      await server.close();
      await server.close();
    }
    await assert.rejects(fetch(`${server.url}/metrics`), "closed");
  });

  test("a taken port is an error naming METATRAIN_METRICS_PORT", async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
    const port = (blocker.address() as { port: number }).port;
    try {
      await assert.rejects(startMetricsServer({ registry: new Registry(), port, host: "127.0.0.1" }), /in use: set METATRAIN_METRICS_PORT/);
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });

  test("ports from the environment, with defaults 9464 and 9465", () => {
    assert.equal(metricsPortFromEnv({}), 9464);
    assert.equal(metricsPortFromEnv({ METATRAIN_METRICS_PORT: "0" }), 0);
    assert.equal(metricsPortFromEnv({ METATRAIN_METRICS_PORT: "9100" }), 9100);
    assert.throws(() => metricsPortFromEnv({ METATRAIN_METRICS_PORT: "http" }), /METATRAIN_METRICS_PORT='http' is not a port number/);
    assert.throws(() => metricsPortFromEnv({ METATRAIN_METRICS_PORT: "70000" }), RangeError);
    assert.equal(temporalMetricsPortFromEnv({}), 9465);
    assert.equal(temporalMetricsPortFromEnv({ METATRAIN_TEMPORAL_METRICS_PORT: "9999" }), 9999);
  });

  test("temporalRuntimeTelemetry: Prometheus exporter with seconds, unit and _total suffixes", () => {
    const opts = temporalRuntimeTelemetry(9465, { host: "0.0.0.0", globalTags: { role: "gpu" } });
    const metricsOpts = opts.telemetryOptions?.metrics as { prometheus: Record<string, unknown>; globalTags?: Record<string, string> };
    assert.equal(metricsOpts.prometheus.bindAddress, "0.0.0.0:9465");
    assert.equal(metricsOpts.prometheus.useSecondsForDurations, true);
    assert.equal(metricsOpts.prometheus.unitSuffix, true);
    assert.equal(metricsOpts.prometheus.countersTotalSuffix, true);
    assert.deepEqual(metricsOpts.globalTags, { role: "gpu" });
    assert.ok((metricsOpts.prometheus.histogramBucketOverrides as Record<string, number[]>).activity_schedule_to_start_latency!.includes(60), "the backlog alert's 60 s threshold is a bucket boundary");
    assert.throws(() => temporalRuntimeTelemetry(0), /METATRAIN_TEMPORAL_METRICS_PORT/);
  });
});

describe("dashboard, rules and docs refer only to metrics that exist", () => {
  const dashboard = JSON.parse(repoFile("infra/grafana/dashboards/metatrain.json")) as Record<string, unknown>;
  const rules = repoFile("infra/prometheus/rules.yml");
  const docs = repoFile("docs/observability.md");

  async function exportedNames(): Promise<Set<string>> {
    const { metrics } = fresh();
    exercise(metrics);
    const names = new Set<string>();
    for (const x of await metrics.registry.getMetricsAsJSON()) {
      names.add(x.name);
      if (String(x.type) === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(x.name + s);
    }
    for (const t of TEMPORAL_SDK_METRICS) {
      names.add(t);
      if (t.endsWith("_seconds")) for (const s of ["_bucket", "_sum", "_count"]) names.add(t + s);
    }
    names.add("up");
    return names;
  }

  test("every metric name in the dashboard's and the rules' PromQL is exported", async () => {
    const names = await exportedNames();
    const exprs = [...dashboardQueries(dashboard, { run_id: "r" }).map((q) => q.expr), rules];
    const referenced = new Set(exprs.flatMap((e) => [...e.matchAll(/\b((?:metatrain|temporal|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1]!)));
    referenced.add("up");
    const unknown = [...referenced].filter((n) => !names.has(n));
    assert.deepEqual(unknown, [], `referenced but never exported: ${unknown.join(", ")}`);
  });

  test("the dashboard has the run selector, a datasource variable, unique panel ids and PromQL on every panel", () => {
    const vars = (dashboard.templating as { list: { name: string; query: unknown; definition?: string }[] }).list;
    const run = vars.find((v) => v.name === "run_id");
    assert.equal(run?.definition, "label_values(metatrain_meta_iteration, run_id)");
    assert.ok(vars.some((v) => v.name === "datasource"));
    const ids: number[] = [];
    const walk = (ps: { id: number; type: string; title: string; targets?: unknown[]; panels?: unknown[] }[]): void => {
      for (const p of ps) {
        ids.push(p.id);
        if (p.type !== "row") assert.ok((p.targets ?? []).length > 0, `panel ${p.title} has queries`);
        walk((p.panels ?? []) as never);
      }
    };
    walk(dashboard.panels as never);
    assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
    for (const title of ["Progress", "ETA", "Query loss, latest iteration", "Evaluation accuracy (95% CI)", "Tasks per second", "Inner-loop latency", "Task-queue backlog (schedule-to-start)", "Storage throughput", "Shard failures and retries", "Resident memory per worker", "TensorFlow.js tensors per worker"]) {
      assert.ok(dashboardQueries(dashboard).some((q) => q.panel === title), `panel "${title}"`);
    }
  });

  test("variable substitution covers Grafana's forms", () => {
    assert.equal(substituteVariables('x{run_id="$run_id"}[$__rate_interval] ${run_id} [[run_id]] ${run_id:raw}', { run_id: "r1" }), 'x{run_id="r1"}[15s] r1 r1 r1');
  });

  test("docs/observability.md describes every exported metatrain metric and every alert", async () => {
    const { metrics } = fresh();
    exercise(metrics);
    for (const x of await metrics.registry.getMetricsAsJSON()) {
      if (x.name.startsWith("metatrain_")) assert.ok(docs.includes(`\`${x.name}\``), `docs/observability.md lacks ${x.name}`);
    }
    for (const [, alert] of rules.matchAll(/- alert: (\w+)/g)) assert.ok(docs.includes(alert!), `docs/observability.md lacks alert ${alert}`);
  });
});
