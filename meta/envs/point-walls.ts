// point-2d with walls — the second environment, one file: the arena is the square [−0.6, 0.6]² and a
// wall stands at x = 0.25 for |y| ≤ 0.25, between the start (the origin) and goals to the right. A
// move that would cross the wall keeps its y-motion and loses its x-motion; a move past the arena's
// edge stops at the edge. Goals, reward, termination and horizon are point-2d's.
import { environmentSpec } from "../tasks/environment.js";
import { pointActionScaleOption, pointEnvironment } from "./point-2d.js";
import type { Environment } from "./types.js";

/** Half the arena's side, the wall's x and the wall's half-length. */
export const ARENA = 0.6;
export const WALL_X = 0.25;
export const WALL_HALF = 0.25;

/** Where a point at (x, y) moved by (ax, ay) ends up (exported for the tests). */
export function wallMove(x: number, y: number, ax: number, ay: number): [number, number] {
  let nx = Math.min(ARENA, Math.max(-ARENA, x + ax));
  const ny = Math.min(ARENA, Math.max(-ARENA, y + ay));
  // Crossing (or touching) the line x = WALL_X: where along the move, and is the wall there?
  if ((x - WALL_X) * (nx - WALL_X) <= 0 && nx !== x) {
    const t = (WALL_X - x) / (nx - x);
    const yAt = y + t * (ny - y);
    if (Math.abs(yAt) <= WALL_HALF) nx = x;
  }
  return [nx, ny];
}

export const pointWalls = (o: { actionScale?: number } = {}): Environment => pointEnvironment("point-walls", wallMove, o.actionScale ?? 1);

export const pointWallsSpec = environmentSpec({
  family: "point-walls",
  describe: "point-2d in the arena [−0.6, 0.6]² with a wall at x = 0.25, |y| ≤ 0.25, between the start and goals to the right.",
  summary: "point-2d with an arena and a wall between the start and the goals to its right",
  shape: { actionScale: pointActionScaleOption },
  build: (o) => pointWalls({ actionScale: o.actionScale }),
});
