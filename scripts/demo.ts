// The README's demo: the embedded local stack (Temporal dev server, one worker, a filesystem store
// under .metatrain/demo), one sinusoid MAML run submitted and watched through the same code as the
// CLI, its final post-adaptation MSE and checkpoint printed, then the stack stopped.
//   npm run demo [-- --iterations 300 --meta-lr 0.01]
import { createServer } from "node:net";
import { displayStoreUri } from "../cli/store.js";
import { report } from "../cli/errors.js";
import { resolveConfig } from "../cli/config.js";
import { newRunId, startRun } from "../cli/commands/submit.js";
import { startLocalStack, type LocalStack } from "../cli/stack.js";
import { connectTemporal, type TemporalSession } from "../cli/temporal.js";
import { durationText, describeRun } from "../cli/runs.js";
import { arg } from "../bench/common.js";

/** A loopback port that was free a moment ago (the demo must not collide with a running `metatrain dev`). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res, rej) => srv.once("error", rej).listen(0, "127.0.0.1", res));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

// The preset's hyperparameters (Finn et al. 2017, §5.1) except three: 300 iterations instead of the
// paper's 70,000, a 10× meta learning rate so that those few iterations visibly learn, and the
// meta-batch of 25 in one shard (a single worker gains nothing from five; the orchestration per
// shard is most of an iteration's time here).
const iterations = arg("iterations", "300");
const metaLr = arg("meta-lr", "0.01");
const shardSize = arg("shard-size", "25");
const say = (line: string) => process.stdout.write(`demo: ${line}\n`);

const t0 = performance.now();
let stack: LocalStack | undefined;
let session: TemporalSession | undefined;
let code = 0;
let stopping: Promise<void> | undefined;
const shutdown = async (): Promise<void> => {
  await session?.close();
  await stack?.stop();
};
process.once("SIGINT", () => {
  say("interrupted: stopping the local stack …");
  stopping = shutdown().then(() => process.exit(130));
});

try {
  const config = resolveConfig({ preset: "sinusoid-maml", set: [`iterations=${iterations}`, `metaLr=${metaLr}`, `shardSize=${shardSize}`, "evalEvery=100", "checkpointEvery=50"] });
  say(`sinusoid regression with MAML on the embedded local stack: preset sinusoid-maml with iterations=${config.iterations}, metaLr=${config.metaLr}, shardSize=${config.shardSize}`);
  const [port, uiPort, metricsPort, temporalMetricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  stack = await startLocalStack({ dir: ".metatrain/demo", port, uiPort, metricsPort, temporalMetricsPort, say });
  say(`stack ready in ${durationText((performance.now() - t0) / 1000)}: Temporal ${stack.address} (Web UI ${stack.uiUrl} while the demo runs), worker pid ${stack.workerPid}, store ${stack.storeUri}`);
  session = await connectTemporal({ ...process.env, ...stack.env });
  const runId = newRunId("demo-sinusoid-maml");
  // Checkpoint URIs are printed against METATRAIN_STORE: the demo's store.
  process.env.METATRAIN_STORE = stack.storeUri;
  code = await startRun(session, runId, config, undefined, { watch: true, intervalMs: 1000 }, `submitted run ${runId}; watching it (pre → post-adaptation MSE of each meta-batch, held-out evaluation every 100 iterations):`);
  const r = await describeRun(session, runId);
  if (r.status === "completed" && r.evaluation) {
    const uri = r.checkpoint ?? "";
    process.stdout.write(
      [
        "",
        `demo finished in ${durationText((performance.now() - t0) / 1000)}.`,
        `  final post-adaptation MSE: ${r.evaluation.loss.mean.toFixed(3)} ± ${r.evaluation.loss.ci95.toFixed(3)} (95% CI; ${r.evaluation.loss.n} held-out sinusoid tasks, K = 10, ${r.evaluation.steps} SGD steps)`,
        `  checkpoint: ${uri}`,
        `  next: npx metatrain eval ${uri}`,
        `        npx metatrain export ${uri} --out ./sinusoid-init`,
        `        npx metatrain dev   (a local stack that stays up, with the Temporal Web UI and a store in ${displayStoreUri("file:./.metatrain/store")};`,
        "                             then, in another terminal: npx metatrain submit --preset sinusoid-maml --watch)",
        "",
      ].join("\n"),
    );
  } else {
    say(`the run ended ${r.status}${r.error ? `: ${r.error.message}` : ""}`);
    code = code || 1;
  }
} catch (e) {
  code = report(e);
} finally {
  if (!stopping) {
    say("stopping the local stack …");
    await shutdown();
  } else await stopping;
}
process.exit(code);
