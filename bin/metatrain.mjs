#!/usr/bin/env node
// The installed `metatrain` command: runs the TypeScript CLI through tsx.
import { register } from "tsx/esm/api";
register();
// `metatrain presets | head` closes stdout early: that is not an error.
process.stdout.on("error", (e) => { if (e.code === "EPIPE") process.exit(0); throw e; });
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
