#!/usr/bin/env node
// The installed `metatrain` command: runs the compiled CLI in dist/ (`npm run build`, also run by
// `npm ci`'s prepare) when it is newer than every source file, else the TypeScript through tsx.
import { fileURLToPath } from "node:url";
import { compiledIsFresh } from "./compiled.mjs";

// The AWS SDK warns on every Node < 22 about its releases after January 2027; metatrain supports
// Node 20 (package.json engines), so a CLI user's error output stays one line.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
// `metatrain presets | head` closes stdout early: that is not an error.
process.stdout.on("error", (e) => { if (e.code === "EPIPE") process.exit(0); throw e; });

let main;
if (compiledIsFresh(fileURLToPath(new URL("..", import.meta.url)))) {
  ({ main } = await import("../dist/cli/main.js"));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("../cli/main.ts"));
}
process.exitCode = await main(process.argv.slice(2));
