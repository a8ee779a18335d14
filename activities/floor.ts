// The no-op activity of the orchestration floor benchmark (workflows/floor.ts): Temporal's cost with nothing of ours.
import { setTimeout as sleep } from "node:timers/promises";
import type { FloorActivities } from "../workflows/floor.js";

/** `noop({ ms })`: sleep `ms` (0: none) and return. */
export function floorActivities(): FloorActivities {
  return {
    async noop({ ms }) {
      if (ms > 0) await sleep(ms);
    },
  };
}
