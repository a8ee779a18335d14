// Observability end to end: real worker processes (1 coordinator, 2 gpu) scraped every second by a real Prometheus during real meta-training runs; every dashboard panel's PromQL must return data, and the counters must add up.
//
// Two runs share the workers: sinusoid MAML (the run the counts are checked on; a store fault
// makes the first attempts of one iteration's shards fail and be retried, so the failure panels
// have real data) and a short Omniglot FOMAML run (classification: the accuracy panels). Nothing
// is simulated: the numbers come from workers/main.ts's wiring, the activities and the workflow sinks.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { Client, Connection, WorkflowFailedError } from "@temporalio/client";
import type { MetaTrainingResult } from "../../contracts/activities.js";
import type { RunConfigInput } from "../../meta/run-config.js";
import { TASK_QUEUES } from "../../contracts/queues.js";
import { defaultOmniglotDir } from "../../storage/datasets.js";
import { iterationPrefix } from "../../storage/keys.js";
import { cancelSignal, metaTrainingWorkflow, pauseSignal, progressQuery, resumeSignal } from "../../workflows/meta-training.js";
import { COORDINATOR_ACTIVITY_SLOTS } from "../../workers/main.js";
import { assertDashboardQueriesReturnData, dashboardQueries, skipUnlessPrometheus, startPrometheus, type PrometheusTestServer } from "../harness/prometheus.js";
import { skipUnlessTemporal, startTemporalServer, type TemporalTestServer } from "../harness/temporal.js";
import { REPO_ROOT, WorkerPool, type WorkerProcess } from "../harness/workers.js";

const MINUTE = 60_000;
const dashboardPath = join(REPO_ROOT, "infra", "grafana", "dashboards", "metatrain.json");

// The sinusoid MAML run the counts are checked on: 12 iterations of 8 tasks in shards of 2.
const SINUSOID_RUN = "obs-e2e-sinusoid";
const ITERATIONS = 12;
const META_BATCH = 8;
const SHARD_SIZE = 2;
const SHARDS = META_BATCH / SHARD_SIZE;
const INNER_STEPS = 2;
const EVAL_EVERY = 4;
const SINUSOID: RunConfigInput = {
  algorithm: "maml",
  task: { family: "sinusoid", shots: 5, queryShots: 5 },
  metaBatchSize: META_BATCH,
  shardSize: SHARD_SIZE,
  iterations: ITERATIONS,
  innerSteps: INNER_STEPS,
  innerLr: 0.01,
  metaLr: 0.001,
  seed: 5,
  checkpointEvery: EVAL_EVERY,
  evalEvery: EVAL_EVERY,
  evalTasks: 20,
  evalSteps: 5,
};
/** The iteration whose shards find their result folder unwritable (a retryable StoreUnavailable) until the test repairs it. */
const FAULT_ITERATION = 3;

// The classification run (accuracy panels): FOMAML, 5-way 1-shot Omniglot MLP, 3 iterations of 4 tasks.
const OMNIGLOT_RUN = "obs-e2e-omniglot";
const OMNIGLOT_ITERATIONS = 3;
const OMNIGLOT_META_BATCH = 4;
const OMNIGLOT: RunConfigInput = {
  algorithm: "fomaml",
  task: { family: "omniglot", ways: 5, shots: 1, queryShots: 5 },
  model: { kind: "omniglot-mlp" },
  metaBatchSize: OMNIGLOT_META_BATCH,
  shardSize: 2,
  iterations: OMNIGLOT_ITERATIONS,
  innerSteps: 1,
  innerLr: 0.4,
  metaLr: 0.001,
  seed: 3,
  batchTasks: false,
  checkpointEvery: OMNIGLOT_ITERATIONS,
  evalEvery: OMNIGLOT_ITERATIONS,
  evalTasks: 8,
  evalSteps: 1,
};

const omniglotDir = defaultOmniglotDir();
const haveOmniglot = existsSync(join(omniglotDir, "background.index.json"));
// CI has the data beside the clone (as test/unit/tasks.test.ts requires): there the accuracy panels must have data too.
if (!haveOmniglot && process.env.CI) throw new Error(`Omniglot not found at ${omniglotDir}: CI needs it for the classification run (set METATRAIN_OMNIGLOT_DIR)`);

function skipReason(): string | false {
  if (process.env.TEMPORAL_ADDRESS) return "TEMPORAL_ADDRESS is set: workers of that server could take shards, and the counts would not add up";
  return skipUnlessTemporal() || skipUnlessPrometheus();
}

describe("observability end to end: worker processes, a real run, a real Prometheus, the dashboard", { skip: skipReason() }, () => {
  let temporal: TemporalTestServer;
  let prom: PrometheusTestServer;
  let pool: WorkerPool;
  let connection: Connection;
  let client: Client;
  let storeRoot: string;
  let faultPath: string;
  let faultRepairedAt: number | undefined;
  let coordinator: WorkerProcess;
  let gpus: WorkerProcess[];
  let runStart = 0;
  let runEnd = 0;
  const results = new Map<string, MetaTrainingResult>();

  before(async () => {
    const t0 = performance.now();
    storeRoot = mkdtempSync(join(tmpdir(), "metatrain-obs-e2e-"));
    temporal = await startTemporalServer();
    pool = new WorkerPool(() => ({
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: temporal.namespace,
      METATRAIN_STORE: pathToFileURL(storeRoot).href,
      METATRAIN_BACKEND: "cpu",
      METATRAIN_OMNIGLOT_DIR: omniglotDir,
      METATRAIN_LOG_LEVEL: "ERROR",
    }));
    // The harness gives each process its own free METATRAIN_METRICS_PORT and METATRAIN_TEMPORAL_METRICS_PORT.
    [coordinator, ...gpus] = await Promise.all([pool.start("coordinator"), pool.start("gpu"), pool.start("gpu")]);
    console.log(`# temporal and 1 coordinator + 2 gpu workers ready in ${(performance.now() - t0).toFixed(0)} ms`);

    const target = (port: number): string => `127.0.0.1:${port}`;
    prom = await startPrometheus({
      jobs: [
        { job: "metatrain-coordinator", targets: [target(coordinator.metricsPort)] },
        { job: "metatrain-gpu", targets: gpus.map((w) => target(w.metricsPort)) },
        { job: "temporal-sdk", targets: pool.workers.map((w) => target(w.temporalMetricsPort)) },
      ],
      intervalSeconds: 1,
      ruleFiles: [join(REPO_ROOT, "infra", "prometheus", "rules.yml")],
    });
    await prom.waitForScrapes(2);

    // The fault: the folder of iteration FAULT_ITERATION's shard results is a symlink to itself, so
    // every write into it fails with ELOOP — StoreUnavailable, retryable — until it is removed.
    faultPath = join(storeRoot, ...iterationPrefix(SINUSOID_RUN, FAULT_ITERATION).replace(/\/$/, "").split("/"));
    mkdirSync(dirname(faultPath), { recursive: true });
    symlinkSync(basename(faultPath), faultPath);

    connection = await Connection.connect({ address: temporal.address });
    client = new Client({ connection, namespace: temporal.namespace });
    runStart = Date.now() / 1000;
    const started = Date.now();
    const runs: [string, RunConfigInput][] = [[SINUSOID_RUN, SINUSOID], ...(haveOmniglot ? [[OMNIGLOT_RUN, OMNIGLOT] as [string, RunConfigInput]] : [])];
    const handles = await Promise.all(
      runs.map(([runId, config]) =>
        client.workflow.start(metaTrainingWorkflow, { taskQueue: TASK_QUEUES.coordinator, workflowId: `${runId}-${started}`, args: [{ runId, config }] }),
      ),
    );
    // Repair the store as soon as a gpu worker has reported a failed shard attempt: the retries (1 s later) then succeed.
    let running = true;
    const repair = (async () => {
      while (running && faultRepairedAt === undefined) {
        for (const w of gpus) {
          const text = await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`).then((r) => r.text(), () => "");
          if (/^metatrain_shards_failed_total\{[^}]*error_type="StoreUnavailable"[^}]*\} [1-9]/m.test(text)) {
            unlinkSync(faultPath);
            faultRepairedAt = Date.now() / 1000;
            break;
          }
        }
        await sleep(100);
      }
    })();
    try {
      for (const [i, h] of handles.entries()) results.set(runs[i]![0], await h.result());
    } finally {
      running = false;
      await repair;
    }
    console.log(`# runs done in ${((Date.now() - started) / 1000).toFixed(1)} s; store repaired ${faultRepairedAt ? `${(faultRepairedAt - runStart).toFixed(1)} s` : "never"} after the start`);
    // Let the last values be scraped, and rate() windows reach past the runs' end.
    await sleep(3_000);
    runEnd = Date.now() / 1000;
  });

  after(async () => {
    await pool?.stopAll();
    await connection?.close().catch(() => undefined);
    await prom?.stop();
    await temporal?.stop();
    if (storeRoot) rmSync(storeRoot, { recursive: true, force: true });
  });

  /** An instant query's single value at the end of the runs (NaN when it returns nothing). */
  const scalar = async (q: string): Promise<number> => Number((await prom.query(q, runEnd))[0]?.value?.[1]);

  test("the runs finish; every worker prints its metrics URL and answers /healthz; every target is up; the rules evaluate", { timeout: MINUTE }, async () => {
    assert.equal(results.get(SINUSOID_RUN)?.iteration, ITERATIONS);
    if (haveOmniglot) assert.equal(results.get(OMNIGLOT_RUN)?.iteration, OMNIGLOT_ITERATIONS);
    assert.ok(faultRepairedAt !== undefined, "a shard attempt failed on the broken store folder and the test repaired it");
    for (const w of pool.workers) {
      assert.match(w.log(), new RegExp(`metrics at http://127\\.0\\.0\\.1:${w.metricsPort}/metrics .*Temporal SDK metrics at http://127\\.0\\.0\\.1:${w.temporalMetricsPort}/metrics, worker=${w.name}`));
      assert.match(w.log(), /worker ready role=/);
      assert.equal((await fetch(`http://127.0.0.1:${w.metricsPort}/healthz`)).status, 200, `${w.name} /healthz`);
    }
    const targets = await prom.targets();
    assert.equal(targets.length, 6, "3 metatrain endpoints and 3 Temporal SDK endpoints");
    for (const t of targets) assert.equal(t.health, "up", `${t.job} ${t.instance}: ${t.lastError}`);
    const res = (await (await fetch(`${prom.url}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
    const rules = res.data.groups.flatMap((g) => g.rules);
    assert.equal(rules.length, 7);
    for (const r of rules) assert.equal(r.health, "ok", `${r.name}: ${r.lastError}`);
  });

  test("every query of every dashboard panel returns data", { timeout: MINUTE }, async () => {
    const dashboard = JSON.parse(readFileSync(dashboardPath, "utf8")) as unknown;
    const window = { start: runStart - 2, end: runEnd, stepSeconds: 1 };
    // The regression run has no accuracy (classification only); the classification run shows it.
    const accuracyPanels = ["Query accuracy, latest iteration", "Evaluation accuracy (95% CI)"];
    const sinusoid = await assertDashboardQueriesReturnData(prom.url, dashboard, { run_id: SINUSOID_RUN }, {
      ...window,
      allowEmpty: Object.fromEntries(accuracyPanels.map((p) => [p, "sinusoid regression has no accuracy"])),
    });
    const total = dashboardQueries(dashboard).length;
    assert.deepEqual([...new Set(sinusoid.empty.map((q) => q.panel))].sort(), [...accuracyPanels].sort(), "only the accuracy panels are empty for a regression run");
    assert.equal(sinusoid.withData.length + sinusoid.empty.length, total);
    if (haveOmniglot) {
      const omniglot = await assertDashboardQueriesReturnData(prom.url, dashboard, { run_id: OMNIGLOT_RUN }, window);
      assert.equal(omniglot.withData.length, total, "every query has data for the classification run");
    }
    const runs = (await (await fetch(`${prom.url}/api/v1/label/run_id/values?match[]=metatrain_meta_iteration`)).json()) as { data: string[] };
    assert.deepEqual(runs.data, haveOmniglot ? [OMNIGLOT_RUN, SINUSOID_RUN] : [SINUSOID_RUN], "the run selector lists the runs");
  });

  test("run progress: the iteration climbs to the total, the state ends finished, the evaluation is the last one", { timeout: MINUTE }, async () => {
    const series = await prom.queryRange(`max(metatrain_meta_iteration{run_id="${SINUSOID_RUN}"})`, runStart, runEnd, 1);
    const values = series[0]!.values!.map(([, v]) => Number(v));
    for (let i = 1; i < values.length; i++) assert.ok(values[i]! >= values[i - 1]!, `the iteration never goes back (${values.join(",")})`);
    assert.ok(values[0]! < ITERATIONS / 2, `seen early in the run (first sample ${values[0]})`);
    assert.ok(new Set(values).size >= 4, `seen climbing, not only at the end (${[...new Set(values)].join(",")})`);
    assert.equal(values.at(-1), ITERATIONS);
    assert.equal(await scalar(`max(metatrain_run_iterations{run_id="${SINUSOID_RUN}"})`), ITERATIONS);
    const state = await prom.query(`max by (state) (metatrain_run_state{run_id="${SINUSOID_RUN}"} and on (instance) topk(1, metatrain_run_updated_timestamp_seconds{run_id="${SINUSOID_RUN}"})) == 1`, runEnd);
    assert.deepEqual(state.map((s) => s.metric.state), ["finished"]);
    assert.equal(await scalar(`max(metatrain_evaluation_iteration{run_id="${SINUSOID_RUN}"})`), ITERATIONS);
    assert.equal(await scalar(`max(metatrain_evaluation_tasks{run_id="${SINUSOID_RUN}"})`), SINUSOID.evalTasks);
    const result = results.get(SINUSOID_RUN)!;
    assert.equal(await scalar(`max(metatrain_evaluation_loss{run_id="${SINUSOID_RUN}"})`), result.evaluation!.loss.mean, "the gauge holds the workflow's evaluation");
    assert.equal(await scalar(`max(metatrain_iteration_loss{run_id="${SINUSOID_RUN}",phase="post"})`), result.latest!.postLoss, "the gauge holds the last round's post-adaptation loss");
    // One duration per iteration on the coordinator: the outer step's report opens it, repeats do not count.
    assert.equal(await scalar(`sum(metatrain_meta_iteration_duration_seconds_count)`), ITERATIONS + (haveOmniglot ? OMNIGLOT_ITERATIONS : 0));
    if (haveOmniglot) {
      const acc = await scalar(`max(metatrain_evaluation_accuracy_ratio{run_id="${OMNIGLOT_RUN}"})`);
      assert.ok(acc >= 0 && acc <= 1, `evaluation accuracy ${acc} is a ratio`);
      assert.equal(acc, results.get(OMNIGLOT_RUN)!.evaluation!.accuracy!.mean);
    }
  });

  test("tasks, shards and inner steps add up across the gpu workers: meta-batch × iterations; failures and retries apart", { timeout: MINUTE }, async (t) => {
    const maml = `algorithm="maml"`;
    assert.equal(await scalar(`sum(metatrain_tasks_completed_total{${maml}})`), META_BATCH * ITERATIONS);
    assert.equal(await scalar(`sum(metatrain_shards_completed_total{${maml}})`), SHARDS * ITERATIONS);
    const perWorker = await prom.query(`sum by (worker) (metatrain_tasks_completed_total{${maml}})`, runEnd);
    assert.equal(perWorker.length, 2, "both gpu workers ran shards");
    for (const s of perWorker) assert.ok(Number(s.value![1]) > 0, `${s.metric.worker} completed tasks`);
    t.diagnostic(`sinusoid tasks completed per worker: ${perWorker.map((s) => `${s.metric.worker}=${s.value![1]}`).join(", ")}`);
    // The fault: at least one attempt of an iteration-3 shard failed on the store and was retried.
    const failed = await scalar(`sum(metatrain_shards_failed_total{${maml},error_type="StoreUnavailable"})`);
    assert.ok(failed >= 1 && failed <= SHARDS * 3, `failed shard attempts: ${failed}`);
    assert.equal(await scalar(`sum(metatrain_shards_failed_total{${maml}})`), failed, "no failure of another type");
    t.diagnostic(`shard attempts failed on the broken store folder and retried: ${failed}`);
    assert.equal(await scalar(`sum(metatrain_tasks_failed_total{${maml}})`), failed * SHARD_SIZE);
    assert.equal(await scalar(`sum(metatrain_shard_retries_total{${maml}})`), failed, "each failed attempt was retried once and succeeded (or failed and was counted again)");
    assert.ok((await scalar(`sum(metatrain_storage_errors_total{operation="put",store="fs"})`)) >= failed);
    assert.ok((await scalar(`sum(temporal_activity_execution_failed_total{activity_type="runShard"})`)) >= 1, "the Temporal SDK counted the failures too");
    // Inner loops ran for every task of every attempt, failed ones included (the write fails after them).
    const tasksRun = META_BATCH * ITERATIONS + failed * SHARD_SIZE;
    assert.equal(await scalar(`sum(metatrain_inner_loop_duration_seconds_count{${maml}})`), tasksRun);
    assert.equal(await scalar(`sum(metatrain_inner_steps_total{${maml}})`), tasksRun * INNER_STEPS);
    assert.equal(await scalar(`sum(metatrain_outer_step_duration_seconds_count{${maml}})`), ITERATIONS);
    if (haveOmniglot) {
      assert.equal(await scalar(`sum(metatrain_tasks_completed_total{algorithm="fomaml"})`), OMNIGLOT_META_BATCH * OMNIGLOT_ITERATIONS);
      assert.equal(await scalar(`sum(metatrain_inner_steps_total{algorithm="fomaml"})`), OMNIGLOT_META_BATCH * OMNIGLOT_ITERATIONS);
    }
    assert.ok((await scalar(`sum(temporal_activity_schedule_to_start_latency_seconds_count{task_queue="metatrain-gpu"})`)) >= SHARDS * ITERATIONS);
  });

  test("storage, checkpoints, parameter cache and worker health are reported", { timeout: MINUTE }, async () => {
    for (const op of ["get", "put"]) {
      assert.ok((await scalar(`sum(metatrain_storage_object_size_bytes_sum{operation="${op}",store="fs"})`)) > 0, `bytes ${op}`);
      assert.ok((await scalar(`sum(metatrain_storage_operation_duration_seconds_count{operation="${op}",store="fs"})`)) > 0, `${op} latencies`);
    }
    // Checkpoints at 4, 8 and 12 (sinusoid) and at 3 (Omniglot), each a manifest plus the latest pointer.
    assert.equal(await scalar(`sum(metatrain_checkpoint_duration_seconds_count)`), ITERATIONS / EVAL_EVERY + (haveOmniglot ? 1 : 0));
    assert.ok((await scalar(`sum(metatrain_checkpoint_size_bytes_sum)`)) > 0);
    const hits = await scalar(`sum(metatrain_params_cache_hits_total)`);
    const misses = await scalar(`sum(metatrain_params_cache_misses_total)`);
    assert.ok(hits > 0 && misses > 0, `params cache hits ${hits}, misses ${misses}`);
    assert.deepEqual((await prom.query(`metatrain_backend_info == 1`, runEnd)).map((s) => s.metric.backend), ["cpu", "cpu", "cpu"]);
    assert.equal(await scalar(`sum(metatrain_activity_slots{task_queue="metatrain-gpu"})`), 2, "one slot per gpu worker (METATRAIN_GPU_CONCURRENCY default)");
    assert.equal(await scalar(`sum(metatrain_activity_slots{task_queue="metatrain-coordinator"})`), COORDINATOR_ACTIVITY_SLOTS);
    assert.ok((await scalar(`max_over_time(sum(metatrain_activities_in_flight{task_queue="metatrain-gpu"})[${Math.ceil(runEnd - runStart)}s:1s])`)) >= 1, "shards were seen in flight");
    const tensors = await prom.query(`metatrain_tfjs_tensors`, runEnd);
    assert.equal(tensors.length, 3);
    for (const s of tensors) assert.ok(Number(s.value![1]) > 0, `${s.metric.worker} holds tensors (parameter cache)`);
    const rss = await prom.query(`process_resident_memory_bytes{job=~"metatrain-.*"}`, runEnd);
    assert.equal(rss.length, 3);
    assert.deepEqual((await prom.query(`temporal_num_pollers{poller_type="activity_task"} > 0`, runEnd)).map((s) => s.metric.task_queue).sort(), ["metatrain-coordinator", "metatrain-gpu", "metatrain-gpu"]);
    for (const s of await prom.query(`temporal_num_pollers`, runEnd)) assert.ok(["coordinator", "gpu"].includes(s.metric.role!), "the SDK series carry the role and worker tags");
  });
  test("the State panel follows a run through pause, resume and cancel, and shows a failed run as failed", { timeout: 3 * MINUTE }, async () => {
    // Runs after the checks above, which query at runEnd: these runs change none of their numbers.
    const statePanel = (runId: string) =>
      `max by (state) (metatrain_run_state{run_id="${runId}"} and on (instance) topk(1, metatrain_run_updated_timestamp_seconds{run_id="${runId}"})) == 1`;
    async function waitForState(runId: string, want: string): Promise<void> {
      const deadline = Date.now() + 30_000;
      let seen: string[] = [];
      while (Date.now() < deadline) {
        seen = (await prom.query(statePanel(runId))).map((s) => s.metric.state!);
        if (seen.length === 1 && seen[0] === want) return;
        await sleep(250);
      }
      assert.fail(`${runId}: the State panel shows [${seen.join(", ")}], not ${want}, after 30 s`);
    }
    const lifecycle = "obs-e2e-lifecycle";
    const handle = await client.workflow.start(metaTrainingWorkflow, {
      taskQueue: TASK_QUEUES.coordinator,
      workflowId: `${lifecycle}-${Date.now()}`,
      args: [{ runId: lifecycle, config: { algorithm: "reptile", task: { family: "sinusoid", shots: 2, queryShots: 2 }, metaBatchSize: 2, shardSize: 2, iterations: 10_000, checkpointEvery: 10_000 } }],
    });
    await waitForState(lifecycle, "running");
    await handle.signal(pauseSignal);
    await waitForState(lifecycle, "paused");
    await handle.signal(resumeSignal);
    await waitForState(lifecycle, "running");
    const deadline = Date.now() + MINUTE;
    while ((await handle.query(progressQuery)).iteration < 2 && Date.now() < deadline) await sleep(200);
    await handle.signal(cancelSignal);
    assert.equal((await handle.result()).cancelled, true);
    await waitForState(lifecycle, "cancelled");

    // A config the workflow rejects: the run fails at once, and says so.
    const failing = "obs-e2e-failing";
    const bad = await client.workflow.start(metaTrainingWorkflow, {
      taskQueue: TASK_QUEUES.coordinator,
      workflowId: `${failing}-${Date.now()}`,
      args: [{ runId: failing, config: { metaBatchSize: 2, shardSize: 4 } }],
    });
    await assert.rejects(bad.result(), WorkflowFailedError);
    await waitForState(failing, "failed");
  });
});
