// Sweeps on the real stack: a 6-trial grid with successive halving runs its trials as child runs
// of the meta-training workflow, stops the losers after the first rung, trains the survivors on
// from their checkpoints, and picks the same winner when the coordinator is SIGKILLed mid-sweep.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, Connection } from "@temporalio/client";
import { TASK_QUEUES } from "../../contracts/queues.js";
import { SweepSpecSchema, type SweepInput, type SweepProgress, type SweepResult } from "../../contracts/sweep.js";
import { parseRunConfig } from "../../meta/run-config.js";
import { sweepProgressQuery, sweepWorkflow } from "../../workflows/sweep.js";
import { skipUnlessTemporal, startTemporalServer, type TemporalTestServer } from "../harness/temporal.js";
import { spawn } from "node:child_process";
import { setTimeout as delay } from "node:timers/promises";
import { METATRAIN_BIN } from "../harness/dev-stack.js";
import { REPO_ROOT, WorkerPool } from "../harness/workers.js";

const MINUTE = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("sweeps with successive halving on Temporal", { skip: skipUnlessTemporal(), timeout: 15 * MINUTE }, () => {
  let temporal: TemporalTestServer;
  let pool: WorkerPool;
  let connection: Connection;
  let client: Client;
  const dir = mkdtempSync(join(tmpdir(), "metatrain-sweep-"));

  before(async () => {
    temporal = await startTemporalServer();
    connection = await Connection.connect({ address: temporal.address });
    client = new Client({ connection, namespace: temporal.namespace });
    pool = new WorkerPool(() => ({ TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace, METATRAIN_STORE: `file://${dir}/store`, METATRAIN_BACKEND: "cpu" }));
    await Promise.all([pool.start("coordinator"), pool.start("gpu"), pool.start("gpu")]);
  });
  after(async () => {
    await pool?.stopAll();
    await connection?.close().catch(() => undefined);
    await temporal?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  // 3 inner rates × 2 meta rates = 6 trials; eta 3, rungs of 2 and 6 iterations: all 6 run 2
  // iterations, the best ⌊6/3⌋ = 2 are trained on to 6 (resuming from their checkpoints), the
  // other 4 are stopped. Sinusoid MAML, held-out score −MSE over 8 tasks.
  const spec = SweepSpecSchema.parse({
    base: parseRunConfig({ algorithm: "maml", task: { family: "sinusoid", shots: 5, queryShots: 5 }, metaBatchSize: 4, shardSize: 2, seed: 3, evalTasks: 8, evalSteps: 1, checkpointEvery: 2 }),
    parameters: [{ key: "innerLr", values: [0.001, 0.01, 0.1] }, { key: "metaLr", values: [0.001, 0.01] }],
    eta: 3,
    minIterations: 2,
    maxIterations: 6,
    concurrency: 2,
  });

  const start = (sweepId: string) =>
    client.workflow.start(sweepWorkflow, { taskQueue: TASK_QUEUES.coordinator, workflowId: sweepId, args: [{ sweepId, spec } satisfies SweepInput] });

  let undisturbed: SweepResult | undefined;

  test("a 6-trial sweep: every trial runs the first rung, the best 2 go on to 6 iterations, the rest are stopped; the winner has the best final score", { timeout: 8 * MINUTE }, async () => {
    const t0 = Date.now();
    const r = await (await start("sweep-a")).result();
    undisturbed = r;
    console.log(`# sweep of ${r.trials.length} trials in ${((Date.now() - t0) / 1000).toFixed(1)} s; winner trial ${r.winner} ${JSON.stringify(r.trials[r.winner]!.values)}`);
    assert.equal(r.trials.length, 6);
    assert.deepEqual(r.budgets, [2, 6]);
    const finished = r.trials.filter((t) => t.state === "finished");
    const stopped = r.trials.filter((t) => t.state === "stopped");
    assert.equal(finished.length, 2, JSON.stringify(r.trials.map((t) => t.state)));
    assert.equal(stopped.length, 4);
    for (const t of stopped) {
      assert.equal(t.iteration, 2, "a stopped trial ran the first rung only");
      assert.equal(t.runs.length, 1);
    }
    for (const t of finished) {
      assert.equal(t.iteration, 6, "a survivor was trained on to maxIterations");
      assert.deepEqual(t.runs, [`sweep-a-t${t.index}-r0`, `sweep-a-t${t.index}-r1`]);
      // Survivors had the best first-rung scores.
      for (const s of stopped) assert.ok(t.scores[0]! >= s.scores[0]!, `trial ${t.index} (${t.scores[0]}) went on over ${s.index} (${s.scores[0]})`);
    }
    const best = Math.max(...finished.map((t) => t.scores[1]!));
    assert.equal(r.trials[r.winner]!.scores[1], best);
    // The second rung resumed from the first rung's checkpoint: its child run started at iteration 2.
    const second = await client.workflow.getHandle(`sweep-a-t${r.winner}-r1`).fetchHistory();
    const input = second.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0]?.data;
    assert.match(Buffer.from(input!).toString(), /"resumeFrom":"runs\/sweep-a-t\d-r0\/checkpoints\/00000002\/manifest\.json"/);
  });

  test("SIGKILL of the coordinator mid-sweep: a new coordinator finishes it with the same decisions and the same winner", { timeout: 8 * MINUTE }, async () => {
    assert.ok(undisturbed, "needs the undisturbed sweep");
    const handle = await start("sweep-b");
    // Kill once the first rung is under way (some trial finished its run).
    for (;;) {
      const p: SweepProgress = await handle.query(sweepProgressQuery);
      if (p.trials.some((t) => t.scores.length > 0)) break;
      await sleep(200);
    }
    for (const c of pool.alive("coordinator")) await c.kill("SIGKILL");
    console.log("# killed the coordinator during the first rung");
    await sleep(2_000);
    await pool.start("coordinator");
    const r = await Promise.race([
      handle.result(),
      // An unref'd timer: once the result wins the race, it must not keep this process alive.
      delay(3 * MINUTE, undefined, { ref: false }).then(async () => {
        const d = await handle.describe();
        const history = await handle.fetchHistory();
        const failures = (history.events ?? []).filter((e) => e.workflowTaskFailedEventAttributes).map((e) => e.workflowTaskFailedEventAttributes?.failure?.message);
        const tail = (s: string) => s.slice(-4000);
        // Each open run: its last events, pending activities and workflow task.
        const open: string[] = [];
        for await (const w of client.workflow.list({ query: "ExecutionStatus = 'Running'" })) {
          const h = client.workflow.getHandle(w.workflowId, w.runId);
          const wd = await h.describe();
          const ev = (await h.fetchHistory()).events ?? [];
          const types = ev.slice(-8).map((e) => Object.keys(e).find((k) => k.endsWith("EventAttributes")) ?? "?");
          open.push(`${w.workflowId}: pendingActivities ${JSON.stringify(wd.raw.pendingActivities?.map((a) => [a.activityType?.name, a.state, a.attempt]))} pendingWorkflowTask ${JSON.stringify(wd.raw.pendingWorkflowTask)} last events ${types.join(", ")}`);
        }
        assert.fail(`sweep-b did not finish in 3 minutes: ${d.status.name}, ${d.raw.pendingChildren?.length ?? 0} pending children, workflow task failures ${JSON.stringify(failures.slice(0, 3))}\n${open.join("\n")}\n${tail(pool.logs())}`);
      }),
    ]);
    assert.equal(r.winner, undisturbed!.winner);
    assert.deepEqual(r.trials.map((t) => t.state), undisturbed!.trials.map((t) => t.state));
    // Scores are bit-identical run for run (same configs, same seed): so are the decisions.
    assert.deepEqual(r.trials.map((t) => t.scores), undisturbed!.trials.map((t) => t.scores));
  });

  /** `metatrain …` as a user runs it, against this stack. */
  const cli = (args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((res, rej) => {
      const child = spawn(process.execPath, [METATRAIN_BIN, ...args], {
        cwd: REPO_ROOT,
        env: { ...process.env, TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace, METATRAIN_STORE: `file://${dir}/store` },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr.on("data", (c: Buffer) => (err += c.toString()));
      child.once("error", rej);
      child.once("exit", (code) => res({ code, out, err }));
    });

  test("`metatrain sweep --preset … --grid … --watch` finds a winner; `status`, `list` and `watch` show the sweep; a bad key is refused before anything starts", { timeout: 6 * MINUTE }, async () => {
    const bad = await cli(["sweep", "--preset", "sinusoid-maml", "--grid", "innerLR=0.01,0.1"]);
    assert.equal(bad.code, 2, bad.err);
    assert.match(bad.err, /did you mean 'innerLr'/);
    const args = ["sweep", "--preset", "sinusoid-maml", "--set", "metaBatchSize=4", "--set", "shardSize=2", "--set", "evalTasks=4", "--grid", "innerLr=0.005,0.02", "--eta", "2", "--min-iterations", "1", "--max-iterations", "2", "--sweep-id", "cli-sweep", "--watch", "--interval", "0.5"];
    const r = await cli(args);
    assert.equal(r.code, 0, `${r.out}\n${r.err}`);
    assert.match(r.out, /started sweep cli-sweep: 2 trials, rungs of 1 → 2 iterations/);
    assert.match(r.out, /^winner: trial [01] \(innerLr=0\.0(05|2)\), score -?\d/m);
    const status = await cli(["status", "cli-sweep", "--json"]);
    assert.equal(status.code, 0, status.err);
    const st = JSON.parse(status.out) as { status: string; winner: number; trials: { state: string }[] };
    assert.equal(st.status, "completed");
    assert.deepEqual(st.trials.map((t) => t.state).sort(), ["finished", "stopped"]);
    const list = await cli(["list"]);
    assert.match(list.out, /sweep cli-sweep {2}completed/);
    const watched = await cli(["watch", "cli-sweep"]);
    assert.equal(watched.code, 0, watched.err);
    assert.match(watched.out, /^winner: trial/m);
  });
});
