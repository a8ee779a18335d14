// 2-D navigation of MAML §5.3 (Finn et al. 2017; cbfinn/maml_rl `point_env_randgoal.py`): a point
// starts at the origin, each action (clipped to [−0.1, 0.1]²) is added to its position, the reward is
// −‖position − goal‖ (Euclidean, as the authors' code; the paper's text says squared), the episode
// ends once the point is within 0.01 of the goal on both axes (the code's test), horizon 100,
// goals U[−0.5, 0.5]².
import { z } from "zod";
import { environmentSpec } from "../tasks/environment.js";
import type { Environment, Transition } from "./types.js";

/** A goal-reaching 2-D point whose move is `move(position, action)`: point-2d's, or one with walls. */
export function pointEnvironment(name: string, move: (x: number, y: number, ax: number, ay: number) => [number, number], actionScale: number): Environment {
  const clip = (a: number) => Math.min(0.1, Math.max(-0.1, a * actionScale));
  return {
    name,
    observationSize: 2,
    actionSize: 2,
    goalSize: 2,
    horizon: 100,
    sampleGoal: (rng) => Float64Array.of(rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)),
    reset: () => new Float64Array(2),
    observe: (state) => state.slice(),
    step(state, action, goal): Transition {
      const [x, y] = move(state[0]!, state[1]!, clip(action[0]!), clip(action[1]!));
      const dx = x - goal[0]!;
      const dy = y - goal[1]!;
      const next = Float64Array.of(x, y);
      return { state: next, observation: next.slice(), reward: -Math.sqrt(dx * dx + dy * dy), done: Math.abs(dx) < 0.01 && Math.abs(dy) < 0.01 };
    },
  };
}

/** Options of point-2d. */
export interface Point2dOptions {
  /**
   * The policy's action is multiplied by this before the clip. Default 1 (the dynamics).
   * 0.1 is what the authors ran: rllab's `normalize()` wrapper maps the policy's a to
   * clip(0.1·a, −0.1, 0.1), so a unit-variance initial policy moves about 0.1 per step.
   */
  actionScale?: number;
}

export const point2d = (o: Point2dOptions = {}): Environment => pointEnvironment("point-2d", (x, y, ax, ay) => [x + ax, y + ay], o.actionScale ?? 1);

const actionScale = z.number().positive().max(1000).default(1).describe("Multiplies the policy's action before the clip to [−0.1, 0.1]²; 0.1 reproduces the authors' rllab normalize() wrapper (the published numbers), 1 is the plain clip.");

export const point2dSpec = environmentSpec({
  family: "point-2d",
  describe: "2-D navigation (MAML §5.3): goal U[−0.5, 0.5]², observation the position, action clipped to [−0.1, 0.1]² and added to it, reward −distance, horizon 100.",
  summary: "2-D point navigation to a goal U[−0.5, 0.5]², reward −distance, horizon 100 (MAML §5.3)",
  shape: { actionScale },
  build: (o) => point2d({ actionScale: o.actionScale }),
});

export { actionScale as pointActionScaleOption };
