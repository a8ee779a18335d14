#!/usr/bin/env node
// The installed `metatrain` command: runs the TypeScript CLI through tsx.
import { register } from "tsx/esm/api";
// The AWS SDK warns on every Node < 22 about its releases after January 2027; metatrain supports
// Node 20 (package.json engines), so a CLI user's error output stays one line.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
register();
// `metatrain presets | head` closes stdout early: that is not an error.
process.stdout.on("error", (e) => { if (e.code === "EPIPE") process.exit(0); throw e; });
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
