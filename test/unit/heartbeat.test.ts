// The adaptive heartbeat timeout of shard activities (workflows/heartbeat.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { heartbeatTimeoutSeconds, longestSilence } from "../../workflows/heartbeat.js";

const defaults = { heartbeatSeconds: 30, heartbeatMinSeconds: 5 };

describe("heartbeat timeout", () => {
  test("before any shard has reported, the configured timeout", () => {
    assert.equal(heartbeatTimeoutSeconds(defaults, undefined), 30);
    assert.equal(heartbeatTimeoutSeconds(defaults, Number.NaN), 30);
  });

  test("3× the longest silence plus 2 s, rounded up, within [min, max]", () => {
    // silence 1 s (a shard beating every second): ceil(3·1 + 2) = 5 = the floor.
    assert.equal(heartbeatTimeoutSeconds(defaults, 1), 5);
    // silence 0.05 s (a shard of a few ms): ceil(2.15) = 3, raised to the floor 5.
    assert.equal(heartbeatTimeoutSeconds(defaults, 0.05), 5);
    // silence 2.1 s: 3·2.1 + 2 = 8.3 → 9.
    assert.equal(heartbeatTimeoutSeconds(defaults, 2.1), 9);
    // silence 6 s (a CPU Conv4 task): 20.
    assert.equal(heartbeatTimeoutSeconds(defaults, 6), 20);
    // silence 12 s: 38, capped at heartbeatSeconds 30.
    assert.equal(heartbeatTimeoutSeconds(defaults, 12), 30);
  });

  test("a floor above the ceiling is capped at the ceiling; min = max is a fixed timeout", () => {
    assert.equal(heartbeatTimeoutSeconds({ heartbeatSeconds: 3, heartbeatMinSeconds: 5 }, 0.1), 3);
    assert.equal(heartbeatTimeoutSeconds({ heartbeatSeconds: 30, heartbeatMinSeconds: 30 }, 0.1), 30);
  });

  test("the longest silence keeps the maximum, ignoring unknowns", () => {
    assert.equal(longestSilence(undefined, undefined), undefined);
    assert.equal(longestSilence(undefined, 2), 2);
    assert.equal(longestSilence(3, undefined), 3);
    assert.equal(longestSilence(3, 2), 3);
  });
});
