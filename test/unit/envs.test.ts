// The environment seam: point-2d's dynamics, reward and termination with hand-derived numbers, the
// wall environment's moves, and the environment task family's purity.
import { test } from "node:test";
import assert from "node:assert/strict";
import { point2d } from "../../meta/envs/point-2d.js";
import { pointWalls, wallMove } from "../../meta/envs/point-walls.js";
import { toTensors } from "../../meta/losses.js";
import { findFamily } from "../../meta/registry.js";
import { environmentFamily } from "../../meta/tasks/environment.js";

const close = (a: number, b: number, what: string, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test("point-2d: start at the origin, clipped actions add to the position, reward −Euclidean distance", () => {
  const env = point2d();
  const goal = Float64Array.of(0.05, 0);
  const s0 = env.reset(goal);
  assert.deepEqual(Array.from(s0), [0, 0]);
  assert.deepEqual(Array.from(env.observe(s0)), [0, 0]);
  // (0.2, −0.03) clips to (0.1, −0.03); the point is 0.05 right of and 0.03 below the goal:
  // reward −√(0.05² + 0.03²) = −√0.0034 = −0.0583095189…, and 0.05 > 0.01: not done.
  const t1 = env.step(s0, [0.2, -0.03], goal);
  close(t1.state[0]!, 0.1, "x");
  close(t1.state[1]!, -0.03, "y");
  close(t1.reward, -0.058309518948453, "reward");
  assert.equal(t1.done, false);
  assert.deepEqual(Array.from(s0), [0, 0], "step does not mutate the state it is given");
  // (−0.045, 0.035) lands at (0.055, 0.005): 0.005 off on each axis, reward −√(5e-5) = −0.0070710678…, done.
  const t2 = env.step(t1.state, [-0.045, 0.035], goal);
  close(t2.observation[0]!, 0.055, "x");
  close(t2.observation[1]!, 0.005, "y");
  close(t2.reward, -Math.SQRT2 * 0.005, "reward");
  assert.equal(t2.done, true);
  assert.equal(env.horizon, 100);
});

test("point-2d ends within 0.01 of the goal on each axis (the authors' test), not within a 0.01 circle", () => {
  const env = point2d();
  const goal = Float64Array.of(0, 0);
  // (0.008, 0.008) is √2·0.008 = 0.0113 from the goal, outside a 0.01 circle, inside the 0.01 box.
  const inBox = env.step(env.reset(goal), [0.008, 0.008], goal);
  assert.equal(inBox.done, true);
  close(inBox.reward, -0.008 * Math.SQRT2, "reward");
  assert.equal(env.step(env.reset(goal), [0.0101, 0], goal).done, false);
});

test("point-2d with actionScale 0.1 moves as rllab's normalize() wrapper: clip(0.1·a, −0.1, 0.1)", () => {
  const env = point2d({ actionScale: 0.1 });
  const goal = Float64Array.of(0.5, 0.5);
  const t = env.step(env.reset(goal), [0.5, -3], goal);
  close(t.state[0]!, 0.05, "x");
  close(t.state[1]!, -0.1, "y (−0.3 clipped)");
});

test("point-walls: the wall at x = 0.25 (|y| ≤ 0.25) stops x-motion across it; the arena edge stops at ±0.6", () => {
  const at = (p: [number, number], q: [number, number], what: string) => {
    close(p[0], q[0], `${what} x`);
    close(p[1], q[1], `${what} y`);
  };
  // From (0.2, 0) by (0.1, 0.05): the move crosses x = 0.25 halfway, at y = 0.025, on the wall: blocked.
  at(wallMove(0.2, 0, 0.1, 0.05), [0.2, 0.05], "blocked from the left");
  at(wallMove(0.3, 0, -0.1, 0), [0.3, 0], "blocked from the right");
  // From (0.2, 0.2) by (0.1, 0.1): crossing at t = 0.5, y = 0.25, the wall's end: blocked.
  at(wallMove(0.2, 0.2, 0.1, 0.1), [0.2, 0.3], "the wall's end");
  // From (0.2, 0.3) by (0.1, 0): crossing at y = 0.3 > 0.25, past the wall: through.
  at(wallMove(0.2, 0.3, 0.1, 0), [0.3, 0.3], "past the wall");
  at(wallMove(0.55, 0.55, 0.1, 0.1), [0.6, 0.6], "the arena's corner");
  const env = pointWalls();
  const goal = Float64Array.of(0.4, 0);
  const t = env.step(Float64Array.of(0.2, 0), [1, 0.05], goal);
  at([t.state[0]!, t.state[1]!], [0.2, 0.05], "through the environment (action clipped to 0.1 first)");
  close(t.reward, -Math.sqrt(0.2 * 0.2 + 0.05 * 0.05), "reward");
});

test("the environment family: kind rl, a pure task of one goal U[−0.5, 0.5]² and a rollout seed", () => {
  const family = findFamily("point-2d")!.build({ family: "point-2d", actionScale: 1 } as never, undefined as never);
  assert.equal(family.kind, "rl");
  assert.deepEqual(family.inputShape, [2]);
  assert.equal(family.outputs, 2);
  assert.equal(family.env!.name, "point-2d");
  const a = family.task(7, "train", 3, 4);
  const b = family.task(7, "train", 3, 4);
  assert.deepEqual(Array.from(a.goal!), Array.from(b.goal!));
  assert.equal(a.seed, b.seed);
  assert.notDeepEqual(Array.from(family.task(7, "train", 3, 5).goal!), Array.from(a.goal!));
  assert.notDeepEqual(Array.from(family.task(7, "test", 3, 4).goal!), Array.from(a.goal!));
  assert.notEqual(family.task(7, "train", 3, 5).seed, a.seed);
  assert.equal(a.support.xShape[0], 0);
  assert.throws(() => toTensors(a.query, "rl", 2), /rl tasks have no support or query examples/);
  // 4000 goal coordinates U[−0.5, 0.5]: all inside, mean 0 with standard error √(1/12)/√4000 =
  // 0.0046, so |mean| < 0.02 (over 4 standard errors).
  let sum = 0;
  for (let i = 0; i < 2000; i++) {
    const g = family.task(1, "train", 0, i).goal!;
    for (const c of g) {
      assert.ok(c >= -0.5 && c < 0.5);
      sum += c;
    }
  }
  assert.ok(Math.abs(sum / 4000) < 0.02, `mean goal coordinate ${sum / 4000}`);
  const walls = environmentFamily(pointWalls());
  assert.equal(walls.name, "point-walls");
  assert.ok(findFamily("point-walls"), "the second environment is registered by its one line");
});
