// Every registered learner runs from one of its presets on the default local stack, as a new user
// would: `metatrain dev`, then `metatrain submit --preset P --set iterations=2 --set evalTasks=10
// --watch` in another process, which must exit 0 with the run completed. The learner list comes
// from the registry, so a new learner is covered by registering it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cheapestPreset, LEARNERS } from "../../meta/algorithms/registry.js";
import { METATRAIN_BIN, skipUnlessTemporalCli, startDevStack, type DevStack } from "../harness/dev-stack.js";

const MINUTE = 60_000;


describe("every learner runs from a preset on `metatrain dev`", { skip: skipUnlessTemporalCli(), timeout: 20 * MINUTE }, () => {
  let dir: string;
  let stack: DevStack;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "metatrain-presets-"));
    stack = await startDevStack(dir);
  });

  after(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  // The presets a new user tries first, beside each learner's cheapest: Conv4 trains on wasm too
  // (meta/wasm-kernels.ts), where CI runs, without the native backend.
  const extra = ["omniglot-5w1s-fomaml-conv4"];
  const cases = [...LEARNERS.map((learner) => ({ learner, preset: cheapestPreset(learner.presets) })), ...extra.map((name) => {
    const learner = LEARNERS.find((l) => l.presets.some((p) => p.name === name))!;
    return { learner, preset: learner.presets.find((p) => p.name === name)! };
  })];
  for (const { learner, preset } of cases) {
    test(`${learner.name}: submit --preset ${preset.name} --watch completes`, async () => {
      assert.ok(learner.presets.length > 0, `${learner.name} has no preset`);
      const runId = `preset-${preset.name}`;
      const args = ["submit", "--preset", preset.name, "--set", "iterations=2", "--set", "evalTasks=10", "--run-id", runId, "--watch", "--interval", "0.5"];
      const r = await new Promise<{ code: number | null; out: string; err: string }>((res, rej) => {
        const child = spawn(process.execPath, [METATRAIN_BIN, ...args], { cwd: dir, env: stack.env, stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        let err = "";
        child.stdout.on("data", (c: Buffer) => (out += c.toString()));
        child.stderr.on("data", (c: Buffer) => (err += c.toString()));
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
          rej(new Error(`metatrain ${args.join(" ")} did not finish in 6 minutes:\n${out}\n${err}\n--- dev:\n${stack.output().slice(-4000)}`));
        }, 6 * MINUTE);
        child.once("exit", (code) => {
          clearTimeout(timer);
          res({ code, out, err });
        });
      });
      assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.out}\nstderr:\n${r.err}\n--- dev:\n${stack.output().slice(-4000)}`);
      assert.match(r.out, new RegExp(`run ${runId} completed: 2/2 iterations`));
      assert.match(r.out, /held-out (MSE|acc) \d/);
    });
  }
});
