// The sweep's pure parts (contracts/sweep.ts): trials, rungs, promotion, config keys.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SweepSpecSchema, promote, rungBudgets, setKey, survivors, sweepTrials, trialConfig, trialRunId, uniform } from "../../contracts/sweep.js";

describe("sweep schedule", () => {
  test("a grid is the cartesian product, first key slowest", () => {
    const trials = sweepTrials({ parameters: [{ key: "innerLr", values: [0.01, 0.1] }, { key: "metaLr", values: [1, 2, 3] }], samples: 1, seed: 1 });
    assert.deepEqual(
      trials.map((t) => [t.values.innerLr, t.values.metaLr]),
      [[0.01, 1], [0.01, 2], [0.01, 3], [0.1, 1], [0.1, 2], [0.1, 3]],
    );
    assert.deepEqual(trials.map((t) => t.index), [0, 1, 2, 3, 4, 5]);
  });

  test("ranges are drawn from the seed: the same seed gives the same trials, another seed others; log ranges stay inside", () => {
    const spec = { parameters: [{ key: "innerLr", lo: 1e-3, hi: 1e-1, log: true }, { key: "metaLr", lo: 0, hi: 1, log: false }], samples: 5, seed: 7 };
    const a = sweepTrials(spec);
    assert.deepEqual(a, sweepTrials(spec));
    assert.notDeepEqual(a, sweepTrials({ ...spec, seed: 8 }));
    assert.equal(a.length, 5);
    for (const t of a) {
      assert.ok((t.values.innerLr as number) >= 1e-3 && (t.values.innerLr as number) <= 1e-1);
      assert.ok((t.values.metaLr as number) >= 0 && (t.values.metaLr as number) < 1);
    }
    // Trial 2, parameter 1 (metaLr, linear): stream (7, 2·2 + 1 = 5).
    assert.equal(a[2]!.values.metaLr, uniform(7, 5));
  });

  test("uniform draws are in [0, 1) and spread out", () => {
    const xs = Array.from({ length: 1000 }, (_, k) => uniform(3, k));
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    // The mean of 1,000 uniforms has standard deviation √(1/12/1000) ≈ 0.009: 0.5 ± 0.05 is > 5σ.
    assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
  });

  test("rung budgets multiply by eta until the maximum", () => {
    assert.deepEqual(rungBudgets({ minIterations: 10, maxIterations: 90, eta: 3 }), [10, 30, 90]);
    assert.deepEqual(rungBudgets({ minIterations: 10, maxIterations: 50, eta: 3 }), [10, 30, 50]);
    assert.deepEqual(rungBudgets({ minIterations: 5, maxIterations: 5, eta: 2 }), [5]);
  });

  test("successive halving keeps the best ⌊n/eta⌋ (at least one), ties to the lower index, failures never", () => {
    assert.equal(survivors(6, 3), 2);
    assert.equal(survivors(2, 3), 1);
    const scored = [
      { index: 0, score: 0.5 },
      { index: 1, score: 0.9 },
      { index: 2, score: Number.NaN },
      { index: 3, score: 0.9 },
      { index: 4, score: 0.1 },
    ];
    assert.deepEqual(promote(scored, 2), [1, 3]);
    assert.deepEqual(promote(scored, 10), [1, 3, 0, 4]);
  });

  test("trial configs set dotted keys on a copy and the rung's iterations", () => {
    const base = { algorithm: "maml", task: { family: "sinusoid", shots: 10 }, iterations: 100 };
    const c = trialConfig({ base }, { index: 0, values: { innerLr: 0.02, "task.shots": 5 } }, 30);
    assert.deepEqual(c, { algorithm: "maml", task: { family: "sinusoid", shots: 5 }, iterations: 30, innerLr: 0.02 });
    assert.equal(base.task.shots, 10, "the base is not changed");
    assert.deepEqual(setKey({}, "maml.firstOrder", true), { maml: { firstOrder: true } });
    assert.equal(trialRunId("sw", 3, 1), "sw-t3-r1");
  });

  test("the spec schema refuses empty sweeps and bad ranges, naming the field", () => {
    const base = { base: {}, minIterations: 2, maxIterations: 6 };
    assert.equal(SweepSpecSchema.safeParse({ ...base, parameters: [] }).success, false);
    const bad = SweepSpecSchema.safeParse({ ...base, parameters: [{ key: "innerLr", lo: 0, hi: 1, log: true }] });
    assert.equal(bad.success, false);
    assert.match(JSON.stringify(bad.error!.issues), /lo < hi/);
    const inverted = SweepSpecSchema.safeParse({ ...base, minIterations: 9, parameters: [{ key: "innerLr", values: [1] }] });
    assert.match(JSON.stringify(inverted.error!.issues), /minIterations/);
    const ok = SweepSpecSchema.parse({ ...base, parameters: [{ key: "innerLr", values: [1] }] });
    assert.equal(ok.eta, 3);
    assert.equal(ok.concurrency, 2);
  });
});
