// Chaos test: one run under a seeded schedule of faults — SIGKILLs of a gpu worker and a coordinator,
// a Temporal server crash and restart, an S3 server restart, and latency, resets, a bandwidth cap
// and a short outage on a real TCP proxy (Toxiproxy) between the workers and S3 — completes with
// final parameters bit-identical to the undisturbed run (the in-process trainer, which the
// orchestration tests show equal to an undisturbed run on the services).
//
// The schedule (which fault, at which iteration, how long) comes from a seed printed at the start;
// METATRAIN_CHAOS_SEED=<seed> replays the same schedule (timings inside the services still vary).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { Client, Connection } from "@temporalio/client";
import { parseRunConfig, type RunConfigInput } from "../../meta/run-config.js";
import { Rng, deriveSeed } from "../../meta/rng.js";
import { TASK_QUEUES } from "../../contracts/queues.js";
import { openStore, type BlobStore } from "../../storage/blobstore.js";
import { metaTrainingWorkflow } from "../../workflows/meta-training.js";
import { useCpu } from "../helpers/tf.js";
import { SMALL_SINUSOID, assertBitIdentical, identityOf, latestRun, reference, runProgress, runResult, storedParams } from "../helpers/runs.js";
import { skipUnlessS3Server, startS3Server, type S3TestServer } from "../harness/s3-server.js";
import { skipUnlessTemporal, startTemporalServer, type TemporalTestServer } from "../harness/temporal.js";
import { skipUnlessToxiproxy, startToxiproxy, type ToxiProxy, type ToxiproxyServer } from "../harness/toxiproxy.js";
import { WorkerPool, workerEnv, type WorkerProcess, type WorkerRole } from "../harness/workers.js";

const MINUTE = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The seed of the fault schedule: METATRAIN_CHAOS_SEED to replay one, else a fresh one. */
function chaosSeed(): number {
  const given = process.env.METATRAIN_CHAOS_SEED;
  if (given === undefined || given === "") return randomInt(0, 2 ** 32);
  const n = Number(given);
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw new Error(`METATRAIN_CHAOS_SEED=${given}: expected an integer in [0, 2^32)`);
  return n;
}

/** What the faults act on. */
interface Targets {
  pool: WorkerPool;
  temporal: TemporalTestServer;
  s3: S3TestServer;
  proxy: ToxiProxy;
  /** Pid of the coordinator that ran the run's last workflow task (undefined when unknown). */
  activeCoordinator: () => Promise<number | undefined>;
  /** Replacements for killed workers, started in the background (awaited at the end). */
  replacements: Promise<WorkerProcess>[];
}

/** One fault: applies itself and resolves once it is over; returns what it did, for the log. */
type Fault = (t: Targets, rng: Rng) => Promise<string>;

const pick = <T>(rng: Rng, xs: T[]): T => xs[Math.floor(rng.next() * xs.length)]!;
const ms = (rng: Rng, lo: number, hi: number): number => Math.round(rng.uniform(lo, hi));

/**
 * Start a worker of `role` as Kubernetes restarts a pod: a worker that exits at start (it cannot
 * reach Temporal while the server is down, say) is started again a second later, a few times.
 */
async function replace(pool: WorkerPool, role: WorkerRole): Promise<WorkerProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await pool.start(role);
    } catch (e) {
      if (attempt >= 10) throw e;
      console.log(`# a replacement ${role} worker exited at start (try ${attempt}): ${(e as Error).message.split("\n")[1] ?? ""}`.slice(0, 300));
      await sleep(1_000);
    }
  }
}

/**
 * SIGKILL one live worker of `role` and start a replacement, as a pod restart: the coordinator
 * that runs the workflow (a standby's death would cost nothing), a gpu worker chosen by the seed.
 */
const killWorker = (role: WorkerRole): Fault => async (t, rng) => {
  const alive = t.pool.alive(role);
  const active = role === "coordinator" ? await t.activeCoordinator() : undefined;
  const drawn = pick(rng, alive); // drawn in every case, so the later faults' draws do not depend on `active`
  const victim = alive.find((w) => w.pid === active) ?? drawn;
  await victim.kill("SIGKILL");
  const replacement = replace(t.pool, role);
  replacement.catch(() => undefined); // awaited, and so reported, at the end of the run
  t.replacements.push(replacement);
  return `SIGKILL ${victim.name} (pid ${victim.pid}${victim.pid === active ? ", the one running the workflow" : ""}); a replacement starts`;
};

/** Apply a toxic for a while, then remove it. */
const toxicFor = (type: "latency" | "reset_peer" | "bandwidth", attributes: (rng: Rng) => Record<string, number>, toxicity: number, lo: number, hi: number): Fault => async (t, rng) => {
  const attrs = attributes(rng);
  const hold = ms(rng, lo, hi);
  const stream = rng.next() < 0.5 ? "upstream" : "downstream";
  await t.proxy.addToxic({ name: "chaos", type, stream, toxicity, attributes: attrs });
  await sleep(hold);
  await t.proxy.removeToxic("chaos");
  return `${type} ${JSON.stringify(attrs)} on ${stream}, toxicity ${toxicity}, for ${hold} ms`;
};

/** Every fault kind the schedule draws from; each occurs once per run, in an order and at iterations the seed picks. */
const FAULTS: Record<string, Fault> = {
  "gpu worker SIGKILL": killWorker("gpu"),
  "coordinator SIGKILL": killWorker("coordinator"),
  "Temporal server SIGKILL and restart": async (t, rng) => {
    const down = ms(rng, 500, 2_000);
    await t.temporal.kill();
    await sleep(down);
    const t0 = performance.now();
    await t.temporal.restart();
    return `down ${down} ms, ready again ${(performance.now() - t0).toFixed(0)} ms after the restart`;
  },
  "S3 server restart": async (t, rng) => {
    const down = ms(rng, 200, 2_000);
    await t.s3.restart(down);
    return `down ${down} ms (object metadata lost)`;
  },
  "S3 latency": toxicFor("latency", (rng) => ({ latency: ms(rng, 50, 300), jitter: ms(rng, 0, 100) }), 1, 2_000, 5_000),
  "S3 connection resets": toxicFor("reset_peer", (rng) => ({ timeout: ms(rng, 0, 200) }), 0.5, 1_000, 3_000),
  "S3 bandwidth cap": toxicFor("bandwidth", (rng) => ({ rate: ms(rng, 16, 128) }), 1, 2_000, 4_000),
  "S3 outage (proxy disabled)": async (t, rng) => {
    const down = ms(rng, 2_000, 6_000);
    await t.proxy.setEnabled(false);
    await sleep(down);
    await t.proxy.setEnabled(true);
    return `${down} ms`;
  },
};

/** A fault at an iteration: fired once the run's progress reaches `iteration`, after `delayMs`. */
interface Scheduled {
  kind: string;
  iteration: number;
  delayMs: number;
}

/** The schedule for `seed`: every fault kind once, at iterations in [first, last], in iteration order. */
export function faultSchedule(seed: number, first: number, last: number): Scheduled[] {
  const rng = new Rng(seed);
  return Object.keys(FAULTS)
    .map((kind) => ({ kind, iteration: first + Math.floor(rng.next() * (last - first + 1)), delayMs: ms(rng, 0, 1_000) }))
    .sort((a, b) => a.iteration - b.iteration || a.kind.localeCompare(b.kind));
}

describe("chaos: one run under seeded worker, coordinator, server, store and network faults", {
  skip: process.env.TEMPORAL_ADDRESS ? "TEMPORAL_ADDRESS is set: the server is not ours to kill" : skipUnlessTemporal() || skipUnlessS3Server() || skipUnlessToxiproxy(),
}, () => {
  const seed = chaosSeed();
  let s3: S3TestServer;
  let temporal: TemporalTestServer;
  let toxiproxy: ToxiproxyServer;
  let proxy: ToxiProxy;
  let pool: WorkerPool;
  let connection: Connection;
  let client: Client;
  let store: BlobStore;
  const STORE_PREFIX = "chaos";

  before(async () => {
    console.log(`# chaos seed ${seed} (replay: METATRAIN_CHAOS_SEED=${seed})`);
    await useCpu(); // the reference trainer runs here, on the backend the workers use
    const t0 = performance.now();
    [s3, temporal, toxiproxy] = await Promise.all([startS3Server(), startTemporalServer(), startToxiproxy({ seed })]);
    proxy = await toxiproxy.createProxy("s3", new URL(s3.endpoint).host);
    const storeUri = `s3://${s3.bucket}/${STORE_PREFIX}`;
    store = await openStore(storeUri, s3.env()); // the test reads the result directly, not through the proxy
    connection = await Connection.connect({ address: temporal.address });
    client = new Client({ connection, namespace: temporal.namespace });
    // Every worker reaches S3 through the fault proxy.
    pool = new WorkerPool(() => workerEnv(temporal, storeUri, { ...s3.env(), AWS_ENDPOINT_URL_S3: `http://${proxy.listen}` }));
    // Two of each: a kill leaves one serving while its replacement starts (a coordinator bundles its workflows first).
    await Promise.all([pool.start("coordinator"), pool.start("coordinator"), pool.start("gpu"), pool.start("gpu")]);
    console.log(`# services and 2 coordinators + 2 gpu workers up in ${(performance.now() - t0).toFixed(0)} ms; workers reach S3 through ${proxy.listen}`);
  });

  after(async () => {
    await pool?.stopAll();
    await connection?.close().catch(() => undefined);
    await toxiproxy?.stop();
    await temporal?.stop();
    await s3?.stop();
  });

  test("the run completes through every fault, bit-identical to the undisturbed run", { timeout: 6 * MINUTE }, async () => {
    const runId = `chaos-${seed}`;
    // About 0.3 s an iteration undisturbed here. The faults run one after another (at most about
    // 25 s in all), and the run goes on during some of them: even with every fault drawn at
    // iteration 40, the last one has started well before iteration 120.
    const input: RunConfigInput = { ...SMALL_SINUSOID, iterations: 120, checkpointEvery: 10, evalEvery: 0 };
    const cfg = parseRunConfig(input);
    const schedule = faultSchedule(seed, 2, 40);
    console.log(`# schedule: ${schedule.map((s) => `${s.kind} @${s.iteration}+${s.delayMs}ms`).join("; ")}`);
    const activeCoordinator = async (): Promise<number | undefined> => {
      const events = (await latestRun(client, runId).fetchHistory().catch(() => undefined))?.events ?? [];
      const identity = [...events].reverse().find((e) => e.workflowTaskStartedEventAttributes)?.workflowTaskStartedEventAttributes?.identity ?? "";
      return pool.alive("coordinator").find((w) => identityOf(w.pid)(identity))?.pid;
    };
    const targets: Targets = { pool, temporal, s3, proxy, activeCoordinator, replacements: [] };
    const rng = new Rng(deriveSeed(seed, 1)); // the faults' own draws, apart from the schedule's
    const applied: string[] = [];
    const giveUp = new AbortController();
    let t0 = 0;
    try {
      // Computed first: the in-process trainer holds this event loop, which would delay the faults.
      const expected = await reference(cfg);
      t0 = performance.now();
      await client.workflow.start(metaTrainingWorkflow, { taskQueue: TASK_QUEUES.coordinator, workflowId: runId, args: [{ runId, config: input }] });
      const done = runResult(client, runId, 5 * MINUTE, giveUp.signal);
      let finished = false;
      void done.then(() => (finished = true), () => (finished = true));
      /** The run's iteration now (undefined while it cannot answer). */
      const iteration = async (): Promise<number | undefined> => (await runProgress(client, runId))?.iteration;
      for (const s of schedule) {
        while (!finished && ((await iteration()) ?? -1) < s.iteration) await sleep(100);
        if (finished) break;
        await sleep(s.delayMs);
        const at = (performance.now() - t0) / 1000;
        const from = await iteration();
        const what = await FAULTS[s.kind]!(targets, rng);
        applied.push(s.kind);
        console.log(`# ${at.toFixed(1)} s, iteration ${from ?? "?"} → ${(await iteration()) ?? "?"}: ${s.kind}: ${what}`);
      }
      const r = await done;
      const seconds = (performance.now() - t0) / 1000;
      assert.deepEqual(applied, schedule.map((s) => s.kind), "the run finished before every fault was applied: give it more iterations");
      assert.equal(r.iteration, cfg.iterations);
      assertBitIdentical(await storedParams(store, r.paramsKey), expected, `${runId} final parameters`);
      await Promise.all(targets.replacements);
      console.log(`# ${cfg.iterations} iterations through ${applied.length} faults in ${seconds.toFixed(1)} s; seed ${seed}`);
    } catch (e) {
      const tail = (s: string) => (s.length > 3000 ? `…${s.slice(-3000)}` : s);
      const logs = pool.workers.map((w) => `----- ${w.name} (pid ${w.pid}${w.alive() ? "" : ", exited"}) -----\n${tail(w.log())}`).join("\n");
      const extra = `\nchaos seed ${seed}; faults applied: ${applied.join(", ")}\n===== worker logs (tails) =====\n${logs}\n===== temporal (tail) =====\n${tail(temporal.log())}\n===== toxiproxy (tail) =====\n${tail(toxiproxy.log())}`;
      if (e instanceof Error) {
        e.message += extra;
        if (e.stack) e.stack += extra;
      }
      throw e;
    } finally {
      giveUp.abort();
    }
  });
});
