// `metatrain report` of real runs: a short sinusoid run on Temporal, an S3 server and worker
// processes that continues as new every 2 iterations, then a second run resumed from its
// checkpoint, during which a gpu worker is SIGKILLed. The record must be continuous across all that; the HTML report is opened in headless
// Chromium (a line with as many points as iterations per run and phase; a screenshot, which is the
// README's docs/report.png with METATRAIN_UPDATE_DOCS=1) and the TensorBoard files are read back by tensorboard's own reader.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, Connection } from "@temporalio/client";
import { chromium } from "playwright-core";
import type { MetaTrainingInput } from "../../contracts/activities.js";
import { TASK_QUEUES } from "../../contracts/queues.js";
import type { RunConfigInput } from "../../meta/run-config.js";
import { openStore, type BlobStore } from "../../storage/blobstore.js";
import { checkpointManifestKey, evaluationRecordKey, recordPrefix, recordSegmentKey } from "../../storage/keys.js";
import { readRunHistory } from "../../storage/record.js";
import { historyScalars } from "../../cli/report/tensorboard.js";
import { metaTrainingWorkflow, progressQuery } from "../../workflows/meta-training.js";
import { METATRAIN_BIN } from "../harness/dev-stack.js";
import { findChromium, skipUnlessReportTools, tensorboardPython } from "../harness/report-tools.js";
import { skipUnlessS3Server, startS3Server, type S3TestServer } from "../harness/s3-server.js";
import { skipUnlessTemporal, startTemporalServer, type TemporalTestServer } from "../harness/temporal.js";
import { REPO_ROOT, WorkerPool } from "../harness/workers.js";

const MINUTE = 60_000;

/** Six iterations, a new execution every two, a checkpoint and an evaluation every three. */
const SOURCE: RunConfigInput = {
  algorithm: "maml",
  task: { family: "sinusoid", shots: 5, queryShots: 5 },
  model: { kind: "sinusoid-mlp" },
  innerSteps: 1,
  innerLr: 0.01,
  metaLr: 0.01,
  metaBatchSize: 4,
  shardSize: 2,
  iterations: 6,
  seed: 5,
  checkpointEvery: 3,
  evalEvery: 3,
  evalTasks: 20,
  evalSteps: 2,
  continueAsNewEvery: 2,
  // A shard lost with the killed worker is retried after at most this.
  timeouts: { heartbeatSeconds: 5 },
};

describe("metatrain report of real runs", { skip: skipUnlessTemporal() || skipUnlessS3Server() || skipUnlessReportTools(), timeout: 8 * MINUTE }, () => {
  let s3: S3TestServer;
  let temporal: TemporalTestServer;
  let pool: WorkerPool;
  let connection: Connection;
  let client: Client;
  let store: BlobStore;
  let storeUri: string;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "metatrain-report-"));
    [s3, temporal] = await Promise.all([startS3Server(), startTemporalServer()]);
    storeUri = `s3://${s3.bucket}/report`;
    store = await openStore(storeUri, s3.env());
    connection = await Connection.connect({ address: temporal.address });
    client = new Client({ connection, namespace: temporal.namespace });
    pool = new WorkerPool(() => ({ TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace, METATRAIN_STORE: storeUri, METATRAIN_BACKEND: "cpu", ...s3.env() }));
    // Two named workers share the shards: the report shows durations per worker.
    await Promise.all([pool.start("all", { name: "worker-a" }), pool.start("gpu", { name: "worker-b" })]);
  });

  after(async () => {
    await pool?.stopAll();
    await connection?.close().catch(() => undefined);
    await temporal?.stop();
    await s3?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const run = (input: MetaTrainingInput) => client.workflow.execute(metaTrainingWorkflow, { taskQueue: TASK_QUEUES.coordinator, workflowId: input.runId, args: [input] });

  /** `metatrain report …` as a user runs it. */
  function report(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
    return new Promise((res) => {
      const child = spawn(process.execPath, [METATRAIN_BIN, "report", ...args], { cwd: dir, env: { ...process.env, METATRAIN_STORE: storeUri, ...s3.env() }, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (err += d));
      child.on("exit", (code) => res({ code, out, err }));
    });
  }

  test("the record survives continue-as-new, a SIGKILLed worker and resume-from; report, browser and TensorBoard agree", async () => {
    await run({ runId: "src", config: SOURCE });
    // Resumed from the source's checkpoint at 3, on to 10: the source's rounds 3–5 are not its history.
    // worker-b is SIGKILLed mid-run; worker-a (role all) carries on, retrying what worker-b held.
    const resumed = await client.workflow.start(metaTrainingWorkflow, {
      taskQueue: TASK_QUEUES.coordinator, workflowId: "resumed", args: [{ runId: "resumed", config: { ...SOURCE, iterations: 10 }, resumeFrom: checkpointManifestKey("src", 3) }],
    });
    const iterationNow = async () => (await resumed.query(progressQuery).catch(() => undefined))?.iteration ?? 0;
    while ((await iterationNow()) < 5) await new Promise((r) => setTimeout(r, 50));
    await pool.alive("gpu")[0]!.kill("SIGKILL");
    await resumed.result();

    // Checkpoints at 3 and 6 compacted the rounds (and the evaluation after 3) before them.
    assert.deepEqual(await store.list(recordPrefix("src")), [recordSegmentKey("src", 0, 2), recordSegmentKey("src", 3, 5), evaluationRecordKey("src", 6)]);
    const src = await readRunHistory(store, "src");
    assert.deepEqual(src.iterations.map((r) => r.iteration), [0, 1, 2, 3, 4, 5], "every round across three executions (continue-as-new every 2)");
    const h = await readRunHistory(store, "resumed");
    assert.deepEqual(h.iterations.map((r) => `${r.runId}:${r.iteration}`), ["src:0", "src:1", "src:2", "resumed:3", "resumed:4", "resumed:5", "resumed:6", "resumed:7", "resumed:8", "resumed:9"]);
    assert.deepEqual(h.evaluations.map((e) => e.iteration), [3, 6, 9, 10]);
    assert.deepEqual(h.origins.map((o) => [o.sourceRunId, o.iteration]), [["src", 3]]);
    const workers = new Set(h.iterations.flatMap((r) => r.shards.map((s) => s.worker)));
    assert.ok([...workers].every((w) => w === "worker-a" || w === "worker-b"), `workers ${[...workers]}`);
    // Same seed and config up to 3: the resumed run's first own round starts where the source's did.
    assert.equal(h.iterations[3]!.preLoss, src.iterations[3]!.preLoss);

    const html = join(dir, "report.html");
    const tb = join(dir, "tb");
    const r = await report(["resumed", "src", "--out", html, "--tensorboard", tb]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /resumed: 10 iterations, 4 evaluations; src: 6 iterations, 2 evaluations/);

    const browser = await chromium.launch({ executablePath: findChromium()!, args: ["--no-sandbox"] });
    try {
      const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
      await page.goto(`file://${html}`);
      // One line per (run, phase); an SVG path of n points is one M and n − 1 L commands.
      const points = await page.$$eval("#train-loss g.mark-line path", (ps) => ps.map((p) => (p.getAttribute("d")?.match(/[ML]/g) ?? []).length));
      assert.deepEqual(points.sort((a, b) => a - b), [6, 6, 10, 10]);
      const bands = await page.$$eval("#eval-loss g.mark-area path", (ps) => ps.length);
      assert.equal(bands, 2, "a CI band per run");
      for (const id of ["time", "shards"]) assert.equal(await page.locator(`#${id} svg`).count(), 1, `chart ${id}`);
      // The README's picture is this screenshot; it lands in docs/ only when asked
      // (METATRAIN_UPDATE_DOCS=1 npm test), so a test run leaves the checkout as it found it.
      const shot = process.env.METATRAIN_UPDATE_DOCS === "1" ? join(REPO_ROOT, "docs", "report.png") : join(dir, "report.png");
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(statSync(shot).size > 10_000, `screenshot ${shot} is ${statSync(shot).size} bytes`);
    } finally {
      await browser.close();
    }

    // TensorBoard's own reader: every scalar back, equal as float32.
    const py = tensorboardPython()!;
    const read = execFileSync(py, ["-c", [
      "import json, sys",
      "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator",
      "ea = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0}); ea.Reload()",
      "print(json.dumps({t: [[e.step, e.value] for e in ea.Scalars(t)] for t in ea.Tags()['scalars']}))",
    ].join("\n"), join(tb, "resumed")], { encoding: "utf8" });
    const got = JSON.parse(read) as Record<string, [number, number][]>;
    const want: Record<string, [number, number][]> = {};
    for (const p of historyScalars(h)) (want[p.tag] ??= []).push([p.step, Math.fround(p.value)]);
    assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
    for (const tag of Object.keys(want)) assert.deepEqual(got[tag], want[tag], tag);
    assert.equal(got["train/loss_after_adaptation"]!.length, 10);

    // Bad input: one line, the project's exit codes (4 not found, 2 usage).
    const unknown = await report(["no-such-run", "--out", html]);
    assert.equal(unknown.code, 4);
    assert.match(unknown.err, /^metatrain: no record of run 'no-such-run'/);
    assert.equal((await report(["src"])).code, 2);
  });
});
