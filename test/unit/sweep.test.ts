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

describe("sweep specs from the CLI (cli/sweeps.ts)", async () => {
  const { resolveSweep, parseGrid, parseRandom } = await import("../../cli/sweeps.js");
  const { CliError } = await import("../../cli/errors.js");
  const none = { set: [], grid: [], random: [] };
  const badInput = (pattern: RegExp) => (e: unknown) => e instanceof CliError && e.exitCode === 2 && pattern.test(e.message);

  test("flags become a spec with every trial's config validated; defaults: eta 3, minIterations max/eta², concurrency 2, the config's seed", () => {
    const spec = resolveSweep({ ...none, preset: "sinusoid-maml", set: ["iterations=90"], grid: ["innerLr=0.005,0.01"], random: ["metaLr=0.0001..0.01:log"], samples: 2 });
    assert.deepEqual(spec.parameters, [{ key: "innerLr", values: [0.005, 0.01] }, { key: "metaLr", lo: 0.0001, hi: 0.01, log: true }]);
    assert.equal(spec.maxIterations, 90);
    assert.equal(spec.minIterations, 10); // ⌊90 / 3²⌋
    assert.equal(spec.eta, 3);
    assert.equal(spec.concurrency, 2);
    assert.equal(spec.samples, 2);
    assert.equal((spec.base as { algorithm: string }).algorithm, "maml");
  });

  test("bad input is one line, exit 2: unknown keys (with the nearest), bad values in a trial, iterations swept, nothing swept, bad flags", () => {
    assert.throws(() => resolveSweep({ ...none, preset: "sinusoid-maml", grid: ["innerLR=0.1,0.2"] }), badInput(/unknown config key 'innerLR' in the sweep \(did you mean 'innerLr'\?\)/));
    assert.throws(() => resolveSweep({ ...none, preset: "sinusoid-maml", grid: ["innerLr=0.01,-1"] }), badInput(/trial 1 \(\{"innerLr":-1\}\): .*innerLr/));
    assert.throws(() => resolveSweep({ ...none, preset: "sinusoid-maml", grid: ["iterations=1,2"] }), badInput(/iterations cannot be swept/));
    assert.throws(() => resolveSweep({ ...none, preset: "sinusoid-maml" }), badInput(/at least one --grid or --random/));
    assert.throws(() => resolveSweep({ ...none, preset: "sinusoid-maml", random: ["metaLr=0..1:log"] }), badInput(/lo < hi \(and lo > 0 when log\)/));
    assert.throws(() => parseGrid("innerLr"), badInput(/--grid expects key=v1,v2/));
    assert.throws(() => parseGrid("innerLr=0.1,fast"), badInput(/values of one kind/));
    assert.throws(() => parseRandom("metaLr=0.1-0.2"), badInput(/--random expects key=lo\.\.hi/));
    assert.deepEqual(parseRandom("metaLr=1e-4..1e-2"), { key: "metaLr", lo: 1e-4, hi: 1e-2, log: false });
  });
});
