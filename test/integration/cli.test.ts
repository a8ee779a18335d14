// The `metatrain` command end to end, run as users run it (`node bin/metatrain.mjs …`, a child
// process per command) against the embedded local stack it starts itself (`metatrain dev`: a real
// Temporal dev server and a worker process) and a real S3 server (rclone) for the S3 errors.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { ApplicationFailure, Client, Connection, WorkflowFailedError } from "@temporalio/client";
import { TASK_QUEUES, WORKFLOW_TYPE } from "../../contracts/queues.js";
import { parseRunConfig } from "../../meta/run-config.js";
import type { RunStatusJson } from "../../cli/runs.js";
import type { EvalJson } from "../../cli/commands/eval.js";
import type { SubmitJson } from "../../cli/commands/submit.js";
import type { ExportDescription } from "../../cli/export-model.js";
import { ExitCodes } from "../../cli/errors.js";
import { openStore } from "../../storage/blobstore.js";
import { deserializeParams, dispose } from "../../meta/params.js";
import { sinusoidMlp } from "../../meta/models.js";
import { useCpu } from "../helpers/tf.js";
import { findTemporal, freePort } from "../harness/temporal.js";
import { METATRAIN_BIN, skipUnlessTemporalCli, startDevStack, type DevStack } from "../harness/dev-stack.js";
import { skipUnlessS3Server, startS3Server, type S3TestServer } from "../harness/s3-server.js";
import { REPO_ROOT, exitOf, killChild, spawnTracked } from "../harness/workers.js";

const BIN = METATRAIN_BIN;
const MINUTE = 60_000;
const skipReason = skipUnlessTemporalCli;

interface CliResult {
  code: number | null;
  out: string;
  err: string;
}

/** The CLI's own error output: one line and at most one suggestion, never a stack trace. */
function assertCleanError(r: CliResult, code: number, message: RegExp): void {
  assert.equal(r.code, code, `exit code; stderr:\n${r.err}\nstdout:\n${r.out}`);
  assert.match(r.err, message);
  assert.match(r.err, /^metatrain: /);
  assert.ok(!/\n\s+at /.test(r.err), `stack trace:\n${r.err}`);
  assert.ok(r.err.trim().split("\n").length <= 2, `more than two lines:\n${r.err}`);
}

describe("metatrain CLI on a real local stack", { skip: skipReason(), timeout: 6 * MINUTE }, () => {
  let dir: string;
  let stack: DevStack;
  let dev: ChildProcess;
  let env: Record<string, string>;
  let storeUri: string;
  let ports: { port: number; uiPort: number; metricsPort: number; sdkMetricsPort: number };

  /** Run one command to its end. */
  function cli(args: string[], extraEnv: Record<string, string> = {}, timeoutMs = 3 * MINUTE): Promise<CliResult> {
    return new Promise((res, rej) => {
      const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...env, ...extraEnv }, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr.on("data", (c: Buffer) => (err += c.toString()));
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        rej(new Error(`metatrain ${args.join(" ")} did not finish within ${timeoutMs} ms; stdout:\n${out}\nstderr:\n${err}`));
      }, timeoutMs);
      child.once("exit", (code) => {
        clearTimeout(timer);
        res({ code, out, err });
      });
    });
  }

  async function json<T>(args: string[], extraEnv: Record<string, string> = {}): Promise<T> {
    const r = await cli([...args, "--json"], extraEnv);
    assert.equal(r.code, 0, `metatrain ${args.join(" ")} --json failed:\n${r.err}`);
    return JSON.parse(r.out) as T;
  }

  async function statusUntil(runId: string, pred: (s: RunStatusJson) => boolean, what: string, timeoutMs = 2 * MINUTE): Promise<RunStatusJson> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // A run submitted by another child process may not exist yet: "no run" (exit 4) means wait.
      const r = await cli(["status", runId, "--json"]);
      if (r.code !== 0 && !(r.code === 4 && /no run/.test(r.err))) assert.fail(`metatrain status ${runId} --json failed (${r.code}):\n${r.err}`);
      const s = r.code === 0 ? (JSON.parse(r.out) as RunStatusJson) : undefined;
      if (s && pred(s)) return s;
      if (Date.now() > deadline) assert.fail(`${runId}: ${what} not within ${timeoutMs} ms; last status ${s ? JSON.stringify(s) : r.err}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  before(async () => {
    await useCpu();
    dir = mkdtempSync(join(tmpdir(), "metatrain-cli-"));
    stack = await startDevStack(dir);
    dev = stack.child;
    ports = stack.ports;
    storeUri = stack.storeUri;
    env = stack.env;
  });

  after(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("dev: says which Temporal CLI it runs, where the Web UI and /metrics are, and serves them", async () => {
    assert.match(stack.output(), /Temporal dev server: \S+ \(TEMPORAL_CLI_PATH; temporal version/);
    assert.match(stack.output(), new RegExp(`Web UI +http://127\\.0\\.0\\.1:${ports.uiPort}`));
    assert.match(stack.output(), new RegExp(`metrics +http://127\\.0\\.0\\.1:${ports.metricsPort}/metrics`));
    assert.match(stack.output(), new RegExp(`store +file://${join(dir, "stack", "store")}`));
    assert.equal((await fetch(`http://127.0.0.1:${ports.uiPort}/`)).status, 200);
    const metrics = await fetch(`http://127.0.0.1:${ports.metricsPort}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^# (HELP|TYPE) /m);
  });

  let doneIterationsA: RunStatusJson;

  test("submit a preset, then watch it to completion", async () => {
    const started = await json<SubmitJson>(["submit", "--preset", "sinusoid-maml", "--set", "iterations=6", "--set", "checkpointEvery=2", "--set", "evalTasks=50", "--run-id", "cli-a"]);
    assert.equal(started.runId, "cli-a");
    assert.equal(started.config.iterations, 6);
    assert.equal(started.config.algorithm, "maml");
    assert.equal(started.config.evalTasks, 50);
    assert.equal(started.taskQueue, "metatrain-coordinator");

    const w = await cli(["watch", "cli-a", "--interval", "0.5"]);
    assert.equal(w.code, 0, w.err);
    assert.match(w.out, /run cli-a completed: 6\/6 iterations/);
    assert.match(w.out, /post-adaptation MSE \d+\.\d+ \(last meta-batch; before adaptation \d+\.\d+\)/);
    assert.match(w.out, /held-out MSE \d+\.\d+ ± \d+\.\d+ \(50 tasks, 10 steps, iteration 6\)/);
    assert.ok(w.out.includes(`checkpoint ${storeUri}/runs/cli-a/checkpoints/00000006/manifest.json`), w.out);

    // Watching a run that has ended prints its end at once; --json as NDJSON.
    const wj = await cli(["watch", "cli-a", "--json"]);
    assert.equal(wj.code, 0);
    const events = wj.out.trim().split("\n").map((l) => JSON.parse(l) as { event: string; run?: RunStatusJson });
    assert.equal(events.at(-1)!.event, "end");
    assert.equal(events.at(-1)!.run!.status, "completed");
  });

  test("status and list, as text and JSON", async () => {
    const s = await json<RunStatusJson>(["status", "cli-a"]);
    doneIterationsA = s;
    assert.equal(s.status, "completed");
    assert.equal(s.iteration, 6);
    assert.equal(s.iterations, 6);
    assert.equal(s.algorithm, "maml");
    assert.equal(s.task, "sinusoid");
    assert.ok(Number.isFinite(s.latest!.postLoss) && s.latest!.tasks === 25);
    assert.equal(s.evaluation!.loss.n, 50);
    assert.equal(s.checkpointKey, "runs/cli-a/checkpoints/00000006/manifest.json");
    assert.equal(s.checkpoint, `${storeUri}/runs/cli-a/checkpoints/00000006/manifest.json`);
    assert.ok(existsSync(fileURLToPath(s.checkpoint!)), "the checkpoint manifest is on disk");
    assert.equal(s.error, null);
    assert.equal(s.config!.iterations, 6);
    assert.equal(s.temporal.workflowId, "cli-a");

    const text = await cli(["status", "cli-a"]);
    assert.equal(text.code, 0);
    assert.match(text.out, /^run cli-a: completed, iteration 6\/6$/m);
    assert.match(text.out, /checkpoint +file:\/\/.*00000006\/manifest\.json/);

    const list = await json<RunStatusJson[]>(["list"]);
    const a = list.find((r) => r.runId === "cli-a");
    assert.ok(a, JSON.stringify(list));
    assert.equal(a.status, "completed");
    assert.equal(a.iteration, 6);
    assert.equal((a as Partial<RunStatusJson>).config, undefined);
    const listText = await cli(["list"]);
    assert.match(listText.out, /^cli-a +completed +6\/6 /m);
  });

  let cancelledAt = 0;

  test("pause, resume and cancel a run that `submit --watch` follows", async () => {
    const watching = cli(["submit", "--preset", "sinusoid-maml", "--set", "iterations=400", "--set", "checkpointEvery=5", "--run-id", "cli-b", "--watch", "--interval", "0.5"]);
    await statusUntil("cli-b", (s) => (s.iteration ?? 0) >= 2, "two iterations");

    const p = await json<{ runId: string; signal: string; iteration: number | null }>(["pause", "cli-b"]);
    assert.equal(p.signal, "pause");
    const paused = await statusUntil("cli-b", (s) => s.status === "paused", "paused");
    // The iteration in flight may still finish: compare once it has settled.
    await new Promise((r) => setTimeout(r, 1500));
    const i1 = (await json<RunStatusJson>(["status", "cli-b"])).iteration!;
    await new Promise((r) => setTimeout(r, 2000));
    const still = await json<RunStatusJson>(["status", "cli-b"]);
    assert.equal(still.status, "paused");
    assert.equal(still.iteration, i1, "no iteration runs while paused");
    assert.ok(i1 >= paused.iteration!);

    const r = await cli(["resume", "cli-b"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /run cli-b: resumed/);
    await statusUntil("cli-b", (s) => s.status === "running" && s.iteration! > i1, "progress after resume");

    const c = await cli(["cancel", "cli-b"]);
    assert.equal(c.code, 0, c.err);
    assert.match(c.out, /run cli-b: cancelling/);

    const w = await watching;
    assert.equal(w.code, 0, w.err);
    assert.match(w.out, /^started run cli-b \(maml, sinusoid, 400 iterations\)/m);
    const m = /run cli-b cancelled after (\d+)\/400 iterations/.exec(w.out);
    assert.ok(m, w.out);
    cancelledAt = Number(m[1]);
    assert.ok(cancelledAt > i1 && cancelledAt < 400);

    const s = await json<RunStatusJson>(["status", "cli-b"]);
    assert.equal(s.status, "cancelled");
    assert.equal(s.iteration, cancelledAt);
    // Cancel checkpoints the last completed iteration.
    assert.equal(s.checkpointKey, `runs/cli-b/checkpoints/${String(cancelledAt).padStart(8, "0")}/manifest.json`);
    assert.ok(existsSync(fileURLToPath(s.checkpoint!)));

    assertCleanError(await cli(["pause", "cli-b"]), ExitCodes.badInput, /run 'cli-b' has ended: there is nothing to pause/);
  });

  test("resume-from a checkpoint URI: a new run goes on from its iteration", async () => {
    const uri = `${storeUri}/runs/cli-b/checkpoints/latest.json`;
    const target = cancelledAt + 3;
    const r = await cli(["resume-from", uri, "--run-id", "cli-c", "--set", `iterations=${target}`, "--watch", "--interval", "0.5"]);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.includes(`started run cli-c from ${storeUri}/runs/cli-b/checkpoints/${String(cancelledAt).padStart(8, "0")}/manifest.json (iteration ${cancelledAt} of ${target}`), r.out);
    assert.match(r.out, new RegExp(`run cli-c completed: ${target}/${target} iterations`));
    const s = await json<RunStatusJson>(["status", "cli-c"]);
    assert.equal(s.status, "completed");
    assert.equal(s.iteration, target);
    assert.equal(s.checkpointKey, `runs/cli-c/checkpoints/${String(target).padStart(8, "0")}/manifest.json`);
  });

  test("a run that fails: watch exits 1 with the error type, status --json carries it", async () => {
    // α = 1e30 sends the first inner step to ±Inf: the shard reports NonFiniteLoss, which is never retried.
    const r = await cli(["submit", "--preset", "sinusoid-maml", "--set", "innerLr=1e30", "--set", "iterations=3", "--run-id", "cli-nan", "--watch", "--interval", "0.5"]);
    assert.equal(r.code, ExitCodes.failure, `${r.out}\n${r.err}`);
    assert.match(r.out, /run cli-nan failed at iteration 0\/3: NonFiniteLoss: /);
    const s = await json<RunStatusJson>(["status", "cli-nan"]);
    assert.equal(s.status, "failed");
    assert.equal(s.error!.type, "NonFiniteLoss");
    assert.ok(s.closedAt);
  });

  test("a config sent by another client: typos at any depth and data-set limits fail the run at once, non-retryable, with the nearest name", async () => {
    const connection = await Connection.connect({ address: env.TEMPORAL_ADDRESS! });
    try {
      const client = new Client({ connection });
      const base = parseRunConfig({ iterations: 2 }) as unknown as Record<string, unknown>;
      const omniglot = { ...(parseRunConfig({ task: { family: "omniglot" }, model: { kind: "omniglot-mlp" }, iterations: 2 }) as unknown as Record<string, unknown>) };
      for (const [runId, config, re] of [
        ["raw-nested", { ...base, failurePolicy: { minShardFractoin: 0.5 } }, /unknown config key 'failurePolicy.minShardFractoin' \(did you mean 'failurePolicy.minShardFraction'\?\)/],
        ["raw-top", { ...base, iteratons: 5 }, /unknown config key 'iteratons' \(did you mean 'iterations'\?\)/],
        ["raw-family", { ...base, task: { family: "sinusoid", shots: 10, queryShots: 10, ways: 5 } }, /unknown config key 'task.ways'/],
        ["raw-limit", { ...omniglot, task: { ...(omniglot.task as object), shots: 19, queryShots: 15 } }, /shots \+ queryShots = 34 images per class, but each Omniglot character has 20 drawings/],
      ] as const) {
        const t0 = Date.now();
        const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue: TASK_QUEUES.coordinator, workflowId: runId, args: [{ runId, config }] });
        const e = await handle.result().then(() => undefined, (x: unknown) => x);
        assert.ok(e instanceof WorkflowFailedError, `${runId}: ${String(e)}`);
        // The workflow's own ApplicationFailure, or the first activity's (initRun) under it.
        let app: ApplicationFailure | undefined;
        for (let c: unknown = e.cause; c instanceof Error; c = c.cause) if (c instanceof ApplicationFailure) app = app ?? c;
        assert.equal(app?.type, "InvalidRunConfig", `${runId}: ${e.cause?.message}`);
        assert.match(e.cause!.message, re, runId);
        assert.ok(Date.now() - t0 < 20_000, `${runId}: failed after ${Date.now() - t0} ms (retried?)`);
      }
    } finally {
      await connection.close();
    }
  });

  test("status and watch of a run that ended mid-way: the iteration it stopped at and the newest stored checkpoint to resume from", async () => {
    // Checkpoints every 2 iterations and a new execution every 3: the current execution's input is
    // then behind where the run stopped, and its checkpoint behind the newest one in the store.
    const started = await cli(["submit", "--preset", "sinusoid-maml", "--set", "iterations=100000", "--set", "checkpointEvery=2", "--set", "continueAsNewEvery=3", "--run-id", "cli-t"]);
    assert.equal(started.code, 0, started.err);
    const seen = await statusUntil("cli-t", (s) => (s.iteration ?? 0) >= 7, "seven iterations");
    const connection = await Connection.connect({ address: env.TEMPORAL_ADDRESS! });
    try {
      await new Client({ connection }).workflow.getHandle("cli-t").terminate("test: stop a run mid-way");
    } finally {
      await connection.close();
    }
    const s = await json<RunStatusJson>(["status", "cli-t"]);
    assert.equal(s.status, "terminated");
    assert.ok(s.iteration! >= seen.iteration!, `stopped at ${s.iteration}, but ${seen.iteration} were seen done`);
    const ckptDir = join(fileURLToPath(storeUri), "runs", "cli-t", "checkpoints");
    const stored = readdirSync(ckptDir).filter((d) => /^\d{8}$/.test(d)).map(Number);
    const newest = Math.max(...stored);
    assert.equal(s.checkpointIteration, newest, `stored checkpoints ${stored.join(", ")}`);
    assert.equal(s.checkpointKey, `runs/cli-t/checkpoints/${String(newest).padStart(8, "0")}/manifest.json`);
    assert.ok(newest <= s.iteration! && newest >= s.iteration! - 2, `checkpoint ${newest} for a run stopped at ${s.iteration}`);
    const text = await cli(["status", "cli-t"]);
    assert.match(text.out, new RegExp(`^run cli-t: terminated, iteration ${s.iteration}/100000$`, "m"));
    assert.ok(text.out.includes(`resume with  metatrain resume-from ${s.checkpoint}`), text.out);
    const w = await cli(["watch", "cli-t"]);
    assert.equal(w.code, ExitCodes.failure, w.err);
    assert.match(w.out, new RegExp(`^run cli-t terminated at iteration ${s.iteration}/100000`, "m"));
    assert.ok(w.out.includes(`checkpoint ${s.checkpoint} (iteration ${newest})`), w.out);
  });

  test("eval: MSE with a 95% CI on held-out tasks, the same number the run's own evaluation gave", async () => {
    // A bare run id: its latest checkpoint in METATRAIN_STORE.
    const e = await json<EvalJson>(["eval", "cli-a", "--tasks", "50"]);
    assert.equal(e.metric, "mse");
    assert.equal(e.tasks, 50);
    assert.equal(e.steps, 10);
    assert.equal(e.iteration, 6);
    assert.equal(e.postAdaptation.n, 50);
    assert.ok(e.postAdaptation.ci95 > 0 && Number.isFinite(e.postAdaptation.mean));
    assert.ok(e.postAdaptation.mean < e.preAdaptation.mean, "10 SGD steps from the initialisation lower the query MSE");
    // Same parameters, task stream, step count and batch as the workflow's final evaluation.
    const run = doneIterationsA.evaluation!.loss.mean;
    assert.ok(Math.abs(e.postAdaptation.mean - run) <= 1e-3 * Math.abs(run), `eval ${e.postAdaptation.mean} vs the run's ${run}`);

    const t = await cli(["eval", `${storeUri}/runs/cli-a/checkpoints/00000004/manifest.json`, "--tasks", "20", "--steps", "1"]);
    assert.equal(t.code, 0, t.err);
    assert.match(t.out, /run cli-a, iteration 4: maml, sinusoid, mlp-1-40-40-1/);
    assert.match(t.out, /20 held-out tasks \(test split\), SGD α = 0\.01, MSE with 95% CI/);
    assert.match(t.out, /after 1 step: +\d+\.\d+ ± \d+\.\d+/);
  });

  test("export: TensorFlow.js loads the weights and the Layers model back, and they compute what the run learned", async () => {
    const out = join(dir, "export-a");
    const uri = `${storeUri}/runs/cli-a/checkpoints/00000006/manifest.json`;
    const r = await cli(["export", uri, "--out", out]);
    assert.equal(r.code, 0, r.err);
    for (const f of ["weights.bin", "weights_manifest.json", "model.json", "metatrain.json"]) assert.ok(existsSync(join(out, f)), f);
    const d = JSON.parse(readFileSync(join(out, "metatrain.json"), "utf8")) as ExportDescription;
    assert.equal(d.format, "metatrain-export/1");
    assert.equal(d.runId, "cli-a");
    assert.equal(d.iteration, 6);
    assert.equal(d.checkpoint, uri);
    assert.deepEqual(d.model, { name: "mlp-1-40-40-1", kind: "sinusoid-mlp", inputShape: [1], outputs: 1, batchNorm: "none" });
    assert.equal(d.files.layersModel, "model.json");

    // The parameters as the run stored them.
    const store = await openStore(storeUri);
    const manifest = JSON.parse(new TextDecoder().decode(await store.get("runs/cli-a/checkpoints/00000006/manifest.json"))) as { paramsKey: string };
    const { params } = deserializeParams(await store.get(manifest.paramsKey));

    // tf.io weights: named as the parameters, bit for bit.
    const wm = JSON.parse(readFileSync(join(out, "weights_manifest.json"), "utf8")) as tf.io.WeightsManifestConfig;
    const bin = readFileSync(join(out, wm[0]!.paths[0]!));
    const weights = tf.io.decodeWeights(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength), wm[0]!.weights);
    assert.deepEqual(Object.keys(weights), Object.keys(params));
    for (const k of Object.keys(params)) assert.deepEqual(weights[k]!.dataSync(), params[k]!.dataSync(), k);

    // tf.loadLayersModel, reading model.json and the files its manifest names (what a browser fetches).
    const modelJson = JSON.parse(readFileSync(join(out, "model.json"), "utf8")) as tf.io.ModelJSON;
    const lm = await tf.loadLayersModel({
      load: async () => {
        const specs = modelJson.weightsManifest.flatMap((g) => g.weights);
        const data = Buffer.concat(modelJson.weightsManifest.flatMap((g) => g.paths.map((p) => readFileSync(join(out, p)))));
        return { modelTopology: modelJson.modelTopology, weightSpecs: specs, weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) };
      },
    });
    const x = tf.linspace(-5, 5, 21).reshape([21, 1]);
    const fromLayers = (lm.predict(x) as tf.Tensor).dataSync();
    const fromModel = sinusoidMlp().forward(params, x).dataSync();
    for (let i = 0; i < fromModel.length; i++) assert.ok(Math.abs(fromLayers[i]! - fromModel[i]!) < 1e-5, `x[${i}]: ${fromLayers[i]} vs ${fromModel[i]}`);
    lm.dispose();
    tf.dispose([x, ...Object.values(weights)]);
    dispose(params);

    assertCleanError(await cli(["export", uri, "--out", out]), ExitCodes.badInput, /--out .* is not empty/);
  });

  describe("errors a user meets: one line, an exit code", () => {
    test("unknown preset (the nearest name), exit 2", async () => {
      assertCleanError(await cli(["submit", "--preset", "sinusoid-mamll"]), ExitCodes.badInput, /unknown preset 'sinusoid-mamll' \(did you mean 'sinusoid-maml'\?\)/);
    });

    test("unknown config key (the nearest key), exit 2", async () => {
      assertCleanError(await cli(["submit", "--preset", "sinusoid-maml", "--set", "metaBatch=10"]), ExitCodes.badInput, /unknown config key 'metaBatch' \(did you mean 'metaBatchSize'\?\)/);
    });

    test("invalid value (the allowed range), exit 2", async () => {
      assertCleanError(await cli(["submit", "--preset", "sinusoid-maml", "--set", "innerSteps=5000"]), ExitCodes.badInput, /innerSteps=5000 is not allowed \(allowed: integer 1–1000\)/);
    });

    test("Temporal unreachable (how to start one), exit 3", async () => {
      const port = await freePort();
      const r = await cli(["status", "cli-a"], { TEMPORAL_ADDRESS: `127.0.0.1:${port}` });
      assertCleanError(r, ExitCodes.unreachable, new RegExp(`cannot reach Temporal at 127\\.0\\.0\\.1:${port} \\(namespace default\\)`));
      assert.match(r.err, /metatrain dev/);
      const submit = await cli(["submit", "--preset", "sinusoid-maml"], { TEMPORAL_ADDRESS: `127.0.0.1:${port}` });
      assertCleanError(submit, ExitCodes.unreachable, /cannot reach Temporal/);
    });

    test("unknown run id (the nearest ids), exit 4; unknown namespace, exit 4", async () => {
      assertCleanError(await cli(["status", "cli-aa"]), ExitCodes.notFound, /no run 'cli-aa' in namespace default at 127\.0\.0\.1:\d+ \(did you mean 'cli-a'\?\)/);
      assertCleanError(await cli(["watch", "no-such-run"]), ExitCodes.notFound, /no run 'no-such-run'/);
      assertCleanError(await cli(["cancel", "no-such-run"]), ExitCodes.notFound, /no run 'no-such-run'/);
      assertCleanError(await cli(["list"], { TEMPORAL_NAMESPACE: "no-such-namespace" }), ExitCodes.notFound, /namespace 'no-such-namespace' does not exist/);
    });

    test("a run id that is taken, exit 2; a checkpoint that is not there, exit 4", async () => {
      assertCleanError(await cli(["submit", "--preset", "sinusoid-maml", "--run-id", "cli-a"]), ExitCodes.badInput, /run id 'cli-a' is taken/);
      assertCleanError(await cli(["resume-from", "cli-zzz"]), ExitCodes.notFound, /no checkpoint at file:\/\/.*\/runs\/cli-zzz\/checkpoints\/latest\.json/);
      assertCleanError(await cli(["eval", `${storeUri}/runs/cli-a/checkpoints/00000005/manifest.json`]), ExitCodes.notFound, /no checkpoint at .*00000005\/manifest\.json/);
    });

    describe("S3: a checkpoint in a real S3 server; wrong credentials or bucket", { skip: skipUnlessS3Server() }, () => {
      let s3: S3TestServer;
      before(async () => {
        s3 = await startS3Server();
        // Copy run cli-a's latest checkpoint (pointer, manifest, parameters) into the bucket.
        const from = await openStore(storeUri);
        const to = await openStore(`s3://${s3.bucket}`, s3.env());
        const pointer = JSON.parse(new TextDecoder().decode(await from.get("runs/cli-a/checkpoints/latest.json"))) as { manifestKey: string };
        const manifest = JSON.parse(new TextDecoder().decode(await from.get(pointer.manifestKey))) as { paramsKey: string };
        for (const k of ["runs/cli-a/checkpoints/latest.json", pointer.manifestKey, manifest.paramsKey]) await to.put(k, await from.get(k));
      });
      after(() => s3?.stop());

      test("eval reads a checkpoint from s3://", async () => {
        const e = await json<EvalJson>(["eval", `s3://${s3.bucket}/runs/cli-a/checkpoints/latest.json`, "--tasks", "5"], s3.env());
        assert.equal(e.iteration, 6);
        assert.equal(e.postAdaptation.n, 5);
      });

      test("wrong S3 credentials: access denied, exit 5", async () => {
        const r = await cli(["eval", `s3://${s3.bucket}/runs/cli-a/checkpoints/latest.json`], { ...s3.env(), AWS_SECRET_ACCESS_KEY: "wrong-secret-key-wrong-secret" });
        assertCleanError(r, ExitCodes.accessDenied, /access denied/i);
      });

      test("a bucket that does not exist: exit 5, naming it", async () => {
        const r = await cli(["export", "s3://no-such-bucket/runs/cli-a/checkpoints/latest.json", "--out", join(dir, "never")], s3.env());
        assertCleanError(r, ExitCodes.accessDenied, /bucket "no-such-bucket" does not exist/);
      });

      test("an S3 endpoint nobody listens on: unreachable, exit 3", async () => {
        const r = await cli(["eval", `s3://${s3.bucket}/runs/cli-a/checkpoints/latest.json`], { ...s3.env(), AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${await freePort()}`, AWS_MAX_ATTEMPTS: "1" });
        assertCleanError(r, ExitCodes.unreachable, /cannot read s3:\/\//);
      });
    });
  });

  test("dev: Ctrl-C stops the worker, then the server, and exits 0", async () => {
    const pids = [/pid (\d+)\)/.exec(stack.output())?.[1], /worker +role all \(pid (\d+)\)/.exec(stack.output())?.[1]].map(Number);
    assert.ok(pids.every((p) => p > 0), stack.output());
    const exited = exitOf(dev);
    dev.kill("SIGINT");
    const { code } = await exited;
    assert.equal(code, 0, stack.output());
    assert.match(stack.output(), /metatrain dev: stopped/);
    for (const pid of pids) {
      assert.throws(() => process.kill(pid, 0), /ESRCH/, `process ${pid} still runs`);
    }
  });
});
