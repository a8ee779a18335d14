// Every preset validates against the run-config schema, and the schema's errors say what to fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { InvalidRunConfigError, shardPlan } from "../../contracts/config.js";
import { PRESETS } from "../../meta/algorithms/registry.js";
import { parseRunConfig } from "../../meta/run-config.js";

test("every preset parses, with a source and a unique name", () => {
  const names = new Set<string>();
  for (const p of PRESETS) {
    const c = parseRunConfig(p.config);
    assert.ok(p.source.length > 20, p.name);
    assert.ok(!names.has(p.name));
    names.add(p.name);
    assert.ok(c.shardSize <= c.metaBatchSize);
  }
  for (const n of ["sinusoid-maml", "sinusoid-reptile", "omniglot-5w1s-maml-mlp", "omniglot-5w1s-fomaml-conv4", "omniglot-5w1s-reptile-conv4", "omniglot-20w1s-maml-conv4"]) {
    assert.ok(names.has(n), `preset ${n} is missing`);
  }
});

test("defaults come from the schema alone", () => {
  const c = parseRunConfig({});
  assert.equal(c.algorithm, "maml");
  assert.deepEqual(c.task, { family: "sinusoid", shots: 10, queryShots: 10 });
  assert.equal(c.failurePolicy.minShardFraction, 1);
});

test("invalid configs name the field and the fix", () => {
  const bad = (cfg: unknown, re: RegExp) => {
    assert.throws(() => parseRunConfig(cfg), (e: unknown) => e instanceof InvalidRunConfigError && re.test(e.message));
  };
  bad({ innerLr: -1 }, /innerLr: .*(>0|positive|greater)/i);
  bad({ algorithm: "sgd" }, /algorithm: /);
  bad({ metaBatchSize: 4, shardSize: 8 }, /shardSize: shardSize 8 exceeds metaBatchSize 4/);
  bad({ task: { family: "omniglot" } }, /model\.kind: sinusoid-mlp does not fit classification tasks \(omniglot\); use omniglot-mlp or conv4/);
  bad({ bogus: 1 }, /bogus/);
});

test("shardPlan covers the meta-batch in order", () => {
  assert.deepEqual(shardPlan({ metaBatchSize: 7, shardSize: 3 }).map((s) => [s.taskStart, s.taskEnd]), [[0, 3], [3, 6], [6, 7]]);
});
