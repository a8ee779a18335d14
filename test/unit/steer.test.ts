// cli/steer.ts signalUntilSeen: a steering signal lost while the run continued as new is sent again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { signalUntilSeen, type SteerTarget } from "../../cli/steer.js";
import type { RunProgress } from "../../contracts/activities.js";

const progress = (o: Partial<RunProgress>): RunProgress => ({ runId: "r", iteration: 3, iterations: 100, paused: false, cancelling: false, metaLr: 0.001, paramsKey: "k", ...o }) as RunProgress;

/** A fake run: `lose` signals vanish in a continue-as-new (the execution's runId changes), the next one is seen. */
function fakeRun(lose: number, which: "pause" | "cancel"): SteerTarget & { sent: number } {
  let execution = 1;
  let shown = false;
  const t = {
    sent: 0,
    async signal() {
      t.sent++;
      if (t.sent <= lose) execution++; // continued as new; the signal never reached the workflow's state
      else shown = true;
    },
    async execution() {
      return { runId: `exec-${execution}`, running: !(shown && which === "cancel") };
    },
    async progress() {
      return progress(shown ? (which === "pause" ? { paused: true } : { cancelling: true }) : {});
    },
  };
  return t;
}

test("a pause lost in a continue-as-new is sent again until the run shows it", async () => {
  const run = fakeRun(2, "pause");
  const p = await signalUntilSeen(run, "pause", { pollMs: 1 });
  assert.equal(run.sent, 3);
  assert.equal(p?.paused, true);
});

test("a cancel is sent once when it lands, and the run's end confirms it", async () => {
  const run = fakeRun(0, "cancel");
  assert.equal(await signalUntilSeen(run, "cancel", { pollMs: 1 }), undefined);
  assert.equal(run.sent, 1);
});

test("no worker to answer: the signal is sent once and not confirmed", async () => {
  let sent = 0;
  const p = await signalUntilSeen({ signal: async () => void sent++, execution: async () => ({ runId: "e", running: true }), progress: async () => undefined }, "resume", { pollMs: 1 });
  assert.equal(p, undefined);
  assert.equal(sent, 1);
});

test("the same execution not showing it yet: waited for, not resent, until the deadline", async () => {
  let sent = 0;
  const p = await signalUntilSeen({ signal: async () => void sent++, execution: async () => ({ runId: "e", running: true }), progress: async () => progress({}) }, "pause", { pollMs: 1, timeoutMs: 30 });
  assert.equal(sent, 1);
  assert.equal(p?.paused, false);
});
