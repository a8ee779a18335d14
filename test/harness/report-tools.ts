// What the report test needs beyond the services: headless Chromium (Debian `chromium`) and
// Python with `tensorboard` (pip); both installed by scripts/install-services.sh.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { isCi } from "./temporal.js";

const INSTALL_HINT = "run `npm run setup:services` (Debian chromium, pip tensorboard)";

/** Chromium's executable: METATRAIN_CHROMIUM_BIN, else /usr/bin/chromium. */
export function findChromium(): string | undefined {
  const p = process.env.METATRAIN_CHROMIUM_BIN ?? "/usr/bin/chromium";
  return existsSync(p) ? p : undefined;
}

/** The Python (PYTHON, else python3) that can import tensorboard's event reader, if any. */
export function tensorboardPython(): string | undefined {
  const py = process.env.PYTHON ?? "python3";
  try {
    execFileSync(py, ["-c", "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator"], { stdio: "ignore", timeout: 60_000 });
    return py;
  } catch {
    return undefined;
  }
}

/** For `describe(..., { skip })`: false when both are there, else why not; under CI, missing ones throw. */
export function skipUnlessReportTools(): string | false {
  const missing = [findChromium() ? undefined : "chromium", tensorboardPython() ? undefined : "python tensorboard"].filter(Boolean);
  if (missing.length === 0) return false;
  const why = `${missing.join(" and ")} not installed: ${INSTALL_HINT}`;
  if (isCi()) throw new Error(`${why} (CI is set)`);
  return why;
}
