// Two `metatrain dev` stacks side by side on one host (issue 15): each with its Temporal SDK metrics
// on a free port (`--temporal-metrics-port 0`, where a fixed 9465 made the second fail), each
// running a run to its end; and a second `dev` on a directory in use refused by its dev.lock.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../harness/temporal.js";
import { METATRAIN_BIN, cleanEnv, skipUnlessTemporalCli, startDevStack, type DevStack } from "../harness/dev-stack.js";

const MINUTE = 60_000;

describe("two local stacks on one host", { skip: skipUnlessTemporalCli(), timeout: 6 * MINUTE }, () => {
  let dirA: string;
  let dirB: string;
  let a: DevStack;
  let b: DevStack;

  before(async () => {
    dirA = mkdtempSync(join(tmpdir(), "metatrain-devA-"));
    dirB = mkdtempSync(join(tmpdir(), "metatrain-devB-"));
    // Started together: neither may take a port the other needs.
    [a, b] = await Promise.all([startDevStack(dirA, dirA, { temporalMetricsPortFlag: "0" }), startDevStack(dirB, dirB, { temporalMetricsPortFlag: "0" })]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    for (const d of [dirA, dirB]) if (d) rmSync(d, { recursive: true, force: true });
  });

  test("each serves its own Temporal SDK metrics on the free port it printed, and runs a run to its end", async () => {
    const sdkUrl = (s: DevStack) => /\(Temporal SDK: (http:\/\/\S+\/metrics)\)/.exec(s.output())?.[1];
    const urls = [sdkUrl(a), sdkUrl(b)];
    assert.ok(urls[0] && urls[1] && urls[0] !== urls[1], `SDK metrics URLs: ${urls.join(", ")}\n${a.output()}\n${b.output()}`);
    assert.ok(!urls.some((u) => u!.endsWith(":9465/metrics")), "0 picks a free port, not the default");
    for (const u of urls) assert.equal((await fetch(u!)).status, 200, u);
    const runs = [a, b].map((s, i) =>
      spawnSync(process.execPath, [METATRAIN_BIN, "submit", "--preset", "sinusoid-maml", "--set", "iterations=2", "--run-id", `side-${i}`, "--watch", "--interval", "0.3"], {
        env: s.env,
        encoding: "utf8",
        timeout: 2 * MINUTE,
      }),
    );
    for (const [i, r] of runs.entries()) {
      assert.equal(r.status, 0, `stack ${i}: ${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, new RegExp(`run side-${i} completed: 2/2 iterations`));
    }
  });

  test("a second `metatrain dev` on a directory in use: refused by its lock, naming the pid", async () => {
    const lock = readFileSync(join(dirA, "stack", "dev.lock"), "utf8").trim();
    assert.equal(Number(lock), a.child.pid, "dev.lock holds the pid of the dev process");
    const r = spawnSync(process.execPath, [METATRAIN_BIN, "dev", "--dir", join(dirA, "stack"), "--port", String(await freePort()), "--ui-port", String(await freePort())], {
      env: cleanEnv(),
      encoding: "utf8",
      timeout: MINUTE,
    });
    assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`metatrain: .*stack is in use by another \`metatrain dev\` \\(pid ${lock}; `));
  });
});
