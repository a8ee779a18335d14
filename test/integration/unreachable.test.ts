// Unreachable services give one clear error naming the cause: a worker that cannot reach Temporal
// exits 2 with one line; a run whose S3 endpoint is down fails as StoreUnavailable naming it.
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
import { exitOf, REPO_ROOT, spawnTracked, startWorker, type WorkerProcess } from "../harness/workers.js";

const skip = skipUnlessTemporal();
const dir = mkdtempSync(join(tmpdir(), "metatrain-unreachable-"));

test("a worker that cannot reach Temporal exits 2 with one line naming the address", { skip, timeout: 120_000 }, async () => {
  const port = await freePort(); // nothing listens there
  const child = spawnTracked(process.execPath, ["--import", "tsx", "workers/main.ts", "--role", "gpu"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
      METATRAIN_STORE: `file://${dir}/store`,
      METATRAIN_BACKEND: "cpu",
      METATRAIN_METRICS_PORT: String(await freePort()),
      METATRAIN_TEMPORAL_METRICS_PORT: String(await freePort()),
    },
  });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  child.stdout?.on("data", () => undefined);
  const { code } = await exitOf(child);
  assert.equal(code, 2, `exit code; stderr:\n${err}`);
  assert.match(err, new RegExp(`127\\.0\\.0\\.1:${port}`), "names the address");
  assert.match(err, /temporal server start-dev|TEMPORAL_ADDRESS/, "says how to fix it");
  assert.doesNotMatch(err, /^\s+at .+:\d+:\d+\)?$/m, "no stack trace");
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

test("a run whose S3 endpoint is down fails as StoreUnavailable, naming the endpoint", { skip, timeout: 300_000 }, async () => {
  const deadPort = await freePort();
  const endpoint = `http://127.0.0.1:${deadPort}`;
  worker = await startWorker({
    role: "all",
    env: {
      TEMPORAL_ADDRESS: server!.address,
      TEMPORAL_NAMESPACE: server!.namespace,
      METATRAIN_STORE: "s3://metatrain-test/unreachable",
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_ACCESS_KEY_ID: "metatrain-test-access",
      AWS_SECRET_ACCESS_KEY: "metatrain-test-secret-key",
      AWS_REGION: "us-east-1",
      METATRAIN_BACKEND: "cpu",
    },
  });
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
    assert.ok(cause.message.includes(`127.0.0.1:${deadPort}`), `names the endpoint: ${cause.message}`);
    assert.ok(Date.now() - t0 < 120_000, "fails within the retry budget, not after hours");
  } finally {
    await connection.close();
  }
});
