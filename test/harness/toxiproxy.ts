// Test harness: a real TCP fault proxy (Shopify's Toxiproxy, `toxiproxy-server`) on a free loopback port, driven over its HTTP API.
import type { ChildProcess } from "node:child_process";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { findExecutable } from "../../cli/executables.js";
import { freePort } from "./temporal.js";
import { killChild, spawnTracked } from "./workers.js";

const INSTALL_HINT = "run `bash scripts/install-services.sh` (it go-installs toxiproxy-server from the Go module proxy into $(go env GOPATH)/bin), or set METATRAIN_TOXIPROXY_BIN";

/**
 * The `toxiproxy-server` executable: $METATRAIN_TOXIPROXY_BIN, else the one
 * scripts/install-services.sh built into `$GOPATH/bin` (default ~/go/bin, found even when that
 * directory is not on PATH), else PATH.
 */
export function findToxiproxy(): string | undefined {
  const gopathBins = (process.env.GOPATH || join(homedir(), "go")).split(delimiter).filter(Boolean).map((d) => join(d, "bin"));
  return findExecutable("toxiproxy-server", "METATRAIN_TOXIPROXY_BIN", process.env, [
    ...(process.env.GOBIN ? [process.env.GOBIN] : []),
    ...gopathBins,
    ...(process.env.PATH ?? "").split(delimiter).filter(Boolean),
  ]);
}

/**
 * For `describe(..., { skip })`: false when toxiproxy-server is installed, else the reason to
 * skip. Under CI (env CI set) a missing binary is a failure, so the tests cannot silently vanish.
 */
export function skipUnlessToxiproxy(): string | false {
  if (findToxiproxy() !== undefined) return false;
  const ci = process.env.CI;
  if (ci !== undefined && ci !== "" && ci !== "false" && ci !== "0") {
    throw new Error(`toxiproxy-server (the fault proxy) is not installed but CI is set: ${INSTALL_HINT} before the tests`);
  }
  return `toxiproxy-server (the fault proxy) is not installed: ${INSTALL_HINT}`;
}

/**
 * A toxic: one fault on one direction of a proxy's connections. Attributes as Toxiproxy names them
 * (times in ms, `rate` in KB/s):
 * - `latency` {latency, jitter}: delay every chunk of data;
 * - `timeout` {timeout}: stop all data, close after `timeout` ms (0: never);
 * - `reset_peer` {timeout}: close with a TCP RST after `timeout` ms;
 * - `bandwidth` {rate}: limit throughput;
 * - `slow_close` {delay}, `limit_data` {bytes}, `slicer` {average_size, size_variation, delay}.
 */
export interface Toxic {
  name: string;
  type: "latency" | "timeout" | "reset_peer" | "bandwidth" | "slow_close" | "limit_data" | "slicer";
  /** Direction: data from the client to the upstream ("upstream") or back ("downstream", default). */
  stream?: "upstream" | "downstream";
  /** Fraction of connections the toxic applies to. Default 1. */
  toxicity?: number;
  attributes: Record<string, number>;
}

/** One proxy: `listen` (what clients dial) forwards to `upstream`. */
export interface ToxiProxy {
  name: string;
  /** host:port clients connect to. */
  listen: string;
  /** host:port it forwards to. */
  upstream: string;
  /** Add a toxic (replaced if one of that name exists). */
  addToxic(toxic: Toxic): Promise<void>;
  /** Remove a toxic; a missing one is not an error. */
  removeToxic(name: string): Promise<void>;
  /** Disabled: the listener is closed and open connections are cut, as in an outage. */
  setEnabled(enabled: boolean): Promise<void>;
}

/** A running toxiproxy-server. */
export interface ToxiproxyServer {
  /** http://127.0.0.1:<port> of the control API. */
  api: string;
  binary: string;
  /** Create a proxy listening on `listen` (default a free loopback port) to `upstream` (host:port). */
  createProxy(name: string, upstream: string, listen?: string): Promise<ToxiProxy>;
  /** Enable every proxy and remove every toxic. */
  reset(): Promise<void>;
  /** The server's output so far. */
  log(): string;
  /** Stop the server (its proxies close). Safe to call twice. */
  stop(): Promise<void>;
}

/** Options of `startToxiproxy`. */
export interface StartToxiproxyOptions {
  /** How long to wait for the API to answer, ms. Default 20000. */
  startTimeoutMs?: number;
  /** Seed of the server's own randomness (latency jitter, toxicity), so a fault schedule replays. Default: the server's. */
  seed?: number;
}

/** Start toxiproxy-server on 127.0.0.1 (a free port) and wait until its API answers. */
export async function startToxiproxy(opts: StartToxiproxyOptions = {}): Promise<ToxiproxyServer> {
  const binary = findToxiproxy();
  if (binary === undefined) throw new Error(`toxiproxy-server not found: ${INSTALL_HINT}`);
  const timeoutMs = opts.startTimeoutMs ?? 20_000;
  let log = "";
  let child: ChildProcess | undefined;
  let api = "";
  // A port picked here and taken before the server binds it: pick another (a few times).
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    const args = ["-host", "127.0.0.1", "-port", String(port), ...(opts.seed !== undefined ? ["-seed", String(opts.seed)] : [])];
    log += `\n# ${binary} ${args.join(" ")}\n`;
    const c = spawnTracked(binary, args, { env: { ...process.env } });
    child = c;
    c.stdout!.on("data", (b: Buffer) => (log += b.toString()));
    c.stderr!.on("data", (b: Buffer) => (log += b.toString()));
    c.once("error", (e) => (log += `\n# cannot start ${binary}: ${e.message}\n`));
    const ready = await waitForApi(api, timeoutMs, () => c.exitCode === null && c.signalCode === null);
    if (ready === "ready") break;
    await killChild(c, "SIGKILL");
    if (ready === "exited" && /address already in use/.test(log) && attempt < 3) continue;
    throw new Error(`toxiproxy-server at ${api} did not answer within ${timeoutMs} ms (${ready}):\n${log}`);
  }

  const call = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(`${api}${path}`, {
      method,
      headers: body === undefined ? undefined : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw Object.assign(new Error(`toxiproxy ${method} ${path}: HTTP ${res.status} ${text}`), { status: res.status });
    return text === "" ? undefined : (JSON.parse(text) as unknown);
  };

  const proxyOf = (name: string, listen: string, upstream: string): ToxiProxy => ({
    name,
    listen,
    upstream,
    async addToxic(toxic) {
      await this.removeToxic(toxic.name);
      await call("POST", `/proxies/${name}/toxics`, { stream: "downstream", toxicity: 1, ...toxic });
    },
    async removeToxic(toxic) {
      await call("DELETE", `/proxies/${name}/toxics/${toxic}`).catch((e: { status?: number }) => {
        if (e.status !== 404) throw e;
      });
    },
    async setEnabled(enabled) {
      await call("POST", `/proxies/${name}`, { enabled });
    },
  });

  let stopped = false;
  return {
    api,
    binary,
    async createProxy(name, upstream, listen) {
      // Port 0 would do, but a disabled proxy that is enabled again must come back on the same port.
      const at = listen ?? `127.0.0.1:${await freePort()}`;
      const p = (await call("POST", "/proxies", { name, listen: at, upstream, enabled: true })) as { listen: string };
      return proxyOf(name, p.listen, upstream);
    },
    async reset() {
      await call("POST", "/reset");
    },
    log: () => log,
    async stop() {
      if (stopped || !child) return;
      stopped = true;
      await killChild(child, "SIGTERM", 3_000);
    },
  };
}

/** Poll GET /version until it answers, the process exits, or `timeoutMs` passes. */
async function waitForApi(api: string, timeoutMs: number, alive: () => boolean): Promise<"ready" | "exited" | "timeout"> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive()) return "exited";
    try {
      const res = await fetch(`${api}/version`, { signal: AbortSignal.timeout(1_000) });
      if (res.ok) return "ready";
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return "timeout";
}

