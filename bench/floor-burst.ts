// The orchestration floor (workflows/floor.ts, one no-op a round) back to back on one dev server,
// then after 3 s idle and after fresh workers: a rate limit shows as rounds that are fast after
// idle and slow after a second. With the server's transfer-queue reads at their default this gave
// ~55, 102, 103, 54, 53, 105 ms a round; bench/RESULTS.md, "The 100 ms step".
//
//   node --import tsx bench/floor-burst.ts [--temporal-dynamic history.transferProcessorMaxPollRPS=20]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Client, Connection } from "@temporalio/client";
import { TASK_QUEUES } from "../contracts/queues.js";
import { orchestrationFloorWorkflow } from "../workflows/floor.js";
import { startTemporalServer } from "../test/harness/temporal.js";
import { WorkerPool } from "../test/harness/workers.js";
import { log, temporalDynamicArg } from "./common.js";

const ROUNDS = 20;
const server = await startTemporalServer({ persistence: "memory", dynamicConfig: temporalDynamicArg() });
const dir = mkdtempSync(join(tmpdir(), "metatrain-floor-burst-"));
const pool = new WorkerPool(() => ({ TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: server.namespace, METATRAIN_STORE: pathToFileURL(dir).href, METATRAIN_BACKEND: "cpu", METATRAIN_LOG_LEVEL: "ERROR" }));
const gpu = () => pool.start("gpu", { extraEnv: { METATRAIN_GPU_CONCURRENCY: "4" } });
const connection = await Connection.connect({ address: server.address });
const client = new Client({ connection, namespace: server.namespace });
let n = 0;
async function floor(label: string): Promise<void> {
  const t0 = performance.now();
  await client.workflow.execute(orchestrationFloorWorkflow, { taskQueue: TASK_QUEUES.coordinator, workflowId: `floor-burst-${++n}`, args: [{ rounds: ROUNDS, shards: 1 }] });
  log(`${label}: ${((performance.now() - t0) / ROUNDS).toFixed(1)} ms a round`);
}
try {
  await pool.start("coordinator");
  await gpu();
  for (const label of ["first", "second", "third"]) await floor(label);
  await new Promise((r) => setTimeout(r, 3_000));
  await floor("after 3 s idle");
  for (const w of pool.alive("gpu")) await w.kill();
  await gpu();
  await floor("fresh gpu worker");
  await floor("fresh gpu worker, second");
} finally {
  await pool.stopAll();
  await connection.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
