// Unreachable services give one clear error naming the cause: a worker that cannot reach Temporal
// exits 2 with one line; a worker whose store is down or refuses its keys does not start (exit 2 /
// 3, one line); a run whose S3 endpoint goes down after the workers started fails as
// StoreUnavailable naming it; a gpu worker the store refuses mid-run is that worker's problem.
import { createServer, request, type Server } from "node:http";
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, Connection, WorkflowFailedError } from "@temporalio/client";
import { ApplicationFailure } from "@temporalio/common";
import { TASK_QUEUES } from "../../contracts/queues.js";
import { metaTrainingWorkflow } from "../../workflows/meta-training.js";
import { freePort, skipUnlessTemporal, startTemporalServer, type TemporalTestServer } from "../harness/temporal.js";
import { startS3Server } from "../harness/s3-server.js";
import { exitOf, REPO_ROOT, spawnTracked, startWorker, type WorkerProcess } from "../harness/workers.js";

const skip = skipUnlessTemporal();
const dir = mkdtempSync(join(tmpdir(), "metatrain-unreachable-"));

/** Start a gpu worker process that is expected to exit; its exit code and stderr. */
async function workerExit(env: Record<string, string>): Promise<{ code: number | null; err: string }> {
  const child = spawnTracked(process.execPath, ["--import", "tsx", "workers/main.ts", "--role", "gpu"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      METATRAIN_BACKEND: "cpu",
      METATRAIN_METRICS_PORT: String(await freePort()),
      METATRAIN_TEMPORAL_METRICS_PORT: String(await freePort()),
      ...env,
    },
  });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  child.stdout?.on("data", () => undefined);
  const { code } = await exitOf(child);
  return { code, err };
}

test("a worker that cannot reach Temporal exits 2 with one line naming the address", { skip, timeout: 120_000 }, async () => {
  const port = await freePort(); // nothing listens there
  const { code, err } = await workerExit({ TEMPORAL_ADDRESS: `127.0.0.1:${port}`, METATRAIN_STORE: `file://${dir}/store` });
  assert.equal(code, 2, `exit code; stderr:\n${err}`);
  assert.match(err, new RegExp(`127\\.0\\.0\\.1:${port}`), "names the address");
  assert.match(err, /temporal server start-dev|TEMPORAL_ADDRESS/, "says how to fix it");
  assert.doesNotMatch(err, /^\s+at .+:\d+:\d+\)?$/m, "no stack trace");
});

test("a worker whose S3 endpoint is down, or that has a wrong secret, does not start: one line, exit 2 / 3", { skip, timeout: 120_000 }, async () => {
  // The store check (storage/probe.ts) retries an unreachable store for METATRAIN_STORE_PROBE_SECONDS
  // (2 here), then exits 2 naming the endpoint; a refused key is final: exit 3 at once.
  const deadPort = await freePort();
  const s3Env = { AWS_ACCESS_KEY_ID: "metatrain-test-access", AWS_SECRET_ACCESS_KEY: "metatrain-test-secret-key", AWS_REGION: "us-east-1" };
  const down = await workerExit({ TEMPORAL_ADDRESS: "127.0.0.1:1", METATRAIN_STORE: "s3://metatrain-test/down", AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${deadPort}`, METATRAIN_STORE_PROBE_SECONDS: "2", ...s3Env });
  assert.equal(down.code, 2, down.err);
  assert.match(down.err, new RegExp(`store check .*127\\.0\\.0\\.1:${deadPort}`), down.err);
  assert.doesNotMatch(down.err, /^\s+at .+:\d+:\d+\)?$/m, "no stack trace");
  const s3 = await startS3Server();
  try {
    const denied = await workerExit({ TEMPORAL_ADDRESS: "127.0.0.1:1", METATRAIN_STORE: `s3://${s3.bucket}/denied`, ...s3.env(), AWS_SECRET_ACCESS_KEY: "wrong-secret-key-wrong-secret" });
    assert.equal(denied.code, 3, denied.err);
    assert.match(denied.err, /store check .*AWS_SECRET_ACCESS_KEY/, denied.err);
    // One line of ours (the AWS SDK adds its own Node-version warning on stderr, not counted).
    assert.equal(denied.err.split("\n").filter((l) => /store check/.test(l)).length, 1, denied.err);
    assert.doesNotMatch(denied.err, /^\s+at .+:\d+:\d+\)?$/m, "no stack trace");
  } finally {
    await s3.stop();
  }
});

let server: TemporalTestServer | undefined;
let worker: WorkerProcess | undefined;
before(async () => {
  if (skip) return;
  server = await startTemporalServer();
});
after(async () => {
  await worker?.kill("SIGKILL");
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("a run whose S3 endpoint goes down after the workers started fails as StoreUnavailable, naming the endpoint", { skip, timeout: 300_000 }, async () => {
  const s3 = await startS3Server();
  const endpoint = s3.env().AWS_ENDPOINT_URL_S3!;
  worker = await startWorker({
    role: "all",
    env: { TEMPORAL_ADDRESS: server!.address, TEMPORAL_NAMESPACE: server!.namespace, METATRAIN_STORE: `s3://${s3.bucket}/unreachable`, ...s3.env(), METATRAIN_BACKEND: "cpu" },
  });
  await s3.stop(); // the worker passed its store check; now the endpoint is gone
  const connection = await Connection.connect({ address: server!.address });
  try {
    const client = new Client({ connection, namespace: server!.namespace });
    const t0 = Date.now();
    const err = await client.workflow
      .execute(metaTrainingWorkflow, {
        taskQueue: TASK_QUEUES.coordinator,
        workflowId: "unreachable-s3",
        args: [{ runId: "unreachable-s3", config: { iterations: 2, metaBatchSize: 2, shardSize: 1, timeouts: { maximumAttempts: 2 } } }],
      })
      .then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof WorkflowFailedError, `the run should fail, got ${String(err)}`);
    const cause = err.cause;
    assert.ok(cause instanceof ApplicationFailure, `cause: ${String(cause)}`);
    assert.equal(cause.type, "StoreUnavailable");
    assert.ok(cause.message.includes(new URL(endpoint).host), `names the endpoint ${endpoint}: ${cause.message}`);
    assert.ok(Date.now() - t0 < 120_000, "fails within the retry budget, not after hours");
  } finally {
    await connection.close();
  }
});

/**
 * An HTTP pass-through to the real S3 server that, once `deny` is set, answers every request
 * 403 AccessDenied — the store refusing a worker whose credentials were revoked after it started.
 * Headers travel unchanged (the SigV4 signature covers Host, which stays the proxy's).
 */
async function refusingProxy(target: URL): Promise<{ url: string; deny: () => void; close: () => Promise<void> }> {
  let denying = false;
  const server: Server = createServer((req, res) => {
    if (denying) {
      req.resume();
      res.writeHead(403, { "content-type": "application/xml" });
      res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>');
      return;
    }
    const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, deny: () => void (denying = true), close: () => new Promise((r) => server.close(() => r())) };
}

test("a gpu worker the store refuses mid-run exits 3 with one line, and its shards are retried on the healthy worker: the run completes", { skip, timeout: 300_000 }, async () => {
  // The previous test's worker (role all, its S3 gone) polls the same queues: it must not take
  // this run's workflow tasks (the start of a run is a local activity of whichever coordinator).
  await worker?.kill("SIGKILL");
  worker = undefined;
  const s3 = await startS3Server();
  const proxy = await refusingProxy(new URL(s3.env().AWS_ENDPOINT_URL_S3!));
  const base = { TEMPORAL_ADDRESS: server!.address, TEMPORAL_NAMESPACE: server!.namespace, METATRAIN_STORE: `s3://${s3.bucket}/refused`, ...s3.env(), METATRAIN_BACKEND: "cpu" };
  const started: WorkerProcess[] = [];
  const connection = await Connection.connect({ address: server!.address });
  try {
    const [, , refused] = await Promise.all([
      startWorker({ role: "coordinator", env: base }),
      startWorker({ role: "gpu", name: "gpu-healthy", env: base }),
      startWorker({ role: "gpu", name: "gpu-refused", env: { ...base, AWS_ENDPOINT_URL_S3: proxy.url } }),
    ]).then((ws) => (started.push(...ws), ws));
    proxy.deny(); // its start-up store check passed; from now on the store refuses it
    const client = new Client({ connection, namespace: server!.namespace });
    // 4 shards a round for 10 rounds: the refused worker takes one within the first rounds.
    const result = await client.workflow.execute(metaTrainingWorkflow, {
      taskQueue: TASK_QUEUES.coordinator,
      workflowId: "refused-worker",
      args: [{ runId: "refused-worker", config: { iterations: 10, metaBatchSize: 4, shardSize: 1 } }],
    });
    assert.equal(result.iteration, 10);
    const { code } = await refused!.exited;
    assert.equal(code, 3, refused!.log());
    const lines = refused!.log().split("\n").filter((l) => /the store refused this worker:/.test(l));
    assert.equal(lines.length, 1, refused!.log());
    assert.match(lines[0]!, /retried on other workers.*exits 3/);
  } finally {
    for (const w of started) await w.kill("SIGKILL");
    await connection.close();
    await proxy.close();
    await s3.stop();
  }
});
