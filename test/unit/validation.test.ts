// Config validation everywhere (issue 15): unknown keys at any depth get the nearest valid name in
// the workflow's parse and the activities' as in the CLI's, data-set limits are config errors, and a
// limit found only once the data is loaded is a non-retryable DataSetLimit failure, not a plain Error.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ApplicationFailure } from "@temporalio/activity";
import { InvalidRunConfigError, parseOrchestration } from "../../contracts/config.js";
import { ErrorTypes, NON_RETRYABLE_ERROR_TYPES } from "../../contracts/errors.js";
import { nearest, unknownKeyLine } from "../../contracts/names.js";
import { toActivityFailure } from "../../activities/errors.js";
import { parseRunConfig } from "../../meta/run-config.js";
import { imageSetFamily, type ImageSet } from "../../meta/tasks/imageset.js";
import { DataSetLimitError } from "../../meta/tasks/types.js";
import { OMNIGLOT_DRAWINGS, omniglotClassCounts } from "../../meta/tasks/omniglot.js";

/** The problems an InvalidRunConfigError lists, or a failure if `fn` does not throw one. */
function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof InvalidRunConfigError, `not an InvalidRunConfigError: ${String(e)}`);
    return e.problems;
  }
  assert.fail("no error");
}

describe("validation: nearest names", () => {
  test("nearest within max(2, ⌊length/2⌋) edits, case-insensitive; a dotted prefix kept", () => {
    assert.equal(nearest("innerLR", ["innerLr", "metaLr"]), "innerLr");
    assert.equal(nearest("zzzzzz", ["innerLr", "metaLr"]), undefined);
    assert.equal(unknownKeyLine("timeouts", "heartbeatSecond", ["heartbeatSeconds"]), "unknown config key 'timeouts.heartbeatSecond' (did you mean 'timeouts.heartbeatSeconds'?)");
  });
});

describe("validation: the workflow's parse (shared keys only) rejects unknown keys at any depth", () => {
  test("nested: failurePolicy and timeouts are strict, with the nearest key", () => {
    assert.deepEqual(problems(() => parseOrchestration({ failurePolicy: { minShardFractoin: 0.5 } })), [
      "unknown config key 'failurePolicy.minShardFractoin' (did you mean 'failurePolicy.minShardFraction'?)",
    ]);
    assert.deepEqual(problems(() => parseOrchestration({ timeouts: { heartbeatSecond: 5 } })), [
      "unknown config key 'timeouts.heartbeatSecond' (did you mean 'timeouts.heartbeatSeconds'?)",
    ]);
  });

  test("top level: a typo, or another learner's options section; the chosen learner's section passes", () => {
    assert.deepEqual(problems(() => parseOrchestration({ iteratons: 5 })), ["unknown config key 'iteratons' (did you mean 'iterations'?)"]);
    assert.match(problems(() => parseOrchestration({ algorithm: "maml", reptile: { anneal: false } }))[0]!, /^unknown config key 'reptile'/);
    const c = parseOrchestration({ algorithm: "reptile", reptile: { anneal: false }, task: { family: "sinusoid" }, model: { kind: "sinusoid-mlp" } });
    assert.equal(c.algorithm, "reptile");
  });
});

describe("validation: the full schema (activities, CLI)", () => {
  test("unknown nested keys name the nearest key of their own object, following the task family", () => {
    assert.deepEqual(problems(() => parseRunConfig({ timeouts: { heartbeatSecond: 5 } })), [
      "unknown config key 'timeouts.heartbeatSecond' (did you mean 'timeouts.heartbeatSeconds'?)",
    ]);
    assert.deepEqual(problems(() => parseRunConfig({ task: { family: "sinusoid", shot: 5 } })), ["unknown config key 'task.shot' (did you mean 'task.shots'?)"]);
    // A key of another family is rejected, not dropped.
    assert.match(problems(() => parseRunConfig({ task: { family: "sinusoid", ways: 5 } }))[0]!, /^unknown config key 'task.ways'/);
  });

  test("Omniglot's limits: shots + queryShots ≤ 20 drawings, ways ≤ the classes of the split's smaller pool", () => {
    const omni = (task: object) => ({ task: { family: "omniglot", ...task }, model: { kind: "omniglot-mlp" } });
    assert.equal(OMNIGLOT_DRAWINGS, 20);
    // 19 + 15 = 34 > 20.
    assert.deepEqual(problems(() => parseRunConfig(omni({ shots: 19, queryShots: 15 }))), [
      "task.shots: shots + queryShots = 34 images per class, but each Omniglot character has 20 drawings; lower them to a total ≤ 20",
    ]);
    assert.equal(parseRunConfig(omni({ shots: 5, queryShots: 15 })).task.family, "omniglot"); // 5 + 15 = 20 fits
    // The authors' split: 964 background (train) and 659 evaluation (test) characters, no rotations.
    assert.deepEqual(omniglotClassCounts("background-evaluation"), { train: 964, test: 659 });
    assert.match(problems(() => parseRunConfig(omni({ split: "background-evaluation", ways: 660 })))[0]!, /^task.ways: ways 660 is more than the 659 classes/);
    // Vinyals: 1200 / 423 characters × 4 rotations = 4800 / 1692 classes, above the schema's 1000.
    assert.deepEqual(omniglotClassCounts("vinyals"), { train: 4800, test: 1692 });
    assert.equal(parseRunConfig(omni({ ways: 1000, queryShots: 1 })).task.family, "omniglot");
    // The sequence family draws `instances` drawings per class.
    assert.doesNotThrow(() => parseRunConfig({ algorithm: "mann", task: { family: "omniglot-sequence", instances: 20 }, model: { kind: "mann" } }));
  });
});

describe("validation: a data-set limit found when a shard runs", () => {
  // Two classes of 3 images each, 2×2 pixels.
  const set: ImageSet = {
    name: "tiny",
    height: 2,
    width: 2,
    images: new Uint8Array(6 * 4),
    classes: [
      { name: "a", firstImage: 0, imageCount: 3 },
      { name: "b", firstImage: 3, imageCount: 3 },
    ],
  };
  const splits = { train: [0, 1], val: [], test: [0, 1] };

  test("is a DataSetLimitError (too few images per class, too few classes for ways)", () => {
    assert.throws(() => imageSetFamily(set, { name: "tiny", ways: 2, shots: 2, queryShots: 2, splits }), (e: unknown) => e instanceof DataSetLimitError && /has 3 images/.test(e.message));
    assert.throws(() => imageSetFamily(set, { name: "tiny", ways: 3, shots: 1, queryShots: 1, splits }), (e: unknown) => e instanceof DataSetLimitError && /fewer than ways = 3/.test(e.message));
  });

  test("and becomes a non-retryable DataSetLimit failure, not a retried plain Error", () => {
    const f = toActivityFailure(new DataSetLimitError("tiny: class 0 has 3 images"));
    assert.ok(f instanceof ApplicationFailure);
    assert.equal(f.type, ErrorTypes.DataSetLimit);
    assert.equal(f.nonRetryable, true);
    assert.ok(NON_RETRYABLE_ERROR_TYPES.includes(ErrorTypes.DataSetLimit));
  });
});
