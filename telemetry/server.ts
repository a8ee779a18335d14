// The /metrics and /healthz HTTP endpoint of every worker role (node:http), and the Runtime options that export Temporal's own SDK metrics on a second port.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import type { RuntimeOptions } from "@temporalio/worker";
import type { Registry } from "prom-client";

/** Default port of the metatrain `/metrics` endpoint (env `METATRAIN_METRICS_PORT`). */
export const DEFAULT_METRICS_PORT = 9464;
/** Default port of the Temporal SDK's own Prometheus endpoint (env `METATRAIN_TEMPORAL_METRICS_PORT`). */
export const DEFAULT_TEMPORAL_METRICS_PORT = 9465;
/** Default bind address of both endpoints (env `METATRAIN_METRICS_HOST`): every interface, for scrapers in other containers. */
export const DEFAULT_METRICS_HOST = "0.0.0.0";

type Env = Readonly<Record<string, string | undefined>>;

/** A port number from the environment, or `fallback` when unset; a malformed value is an error naming the variable. */
export function portFromEnv(name: string, fallback: number, env: Env = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new RangeError(`${name}='${raw}' is not a port number: set it to an integer in 0..65535 (0 picks a free port), or unset it for ${fallback}`);
  }
  return port;
}

/**
 * A port free on `host` now (bound on 0, then released). For the Temporal SDK's exporter, which
 * binds the port it is given and cannot report one it picked: a 0 becomes this port, which is then
 * printed (the usual pick-then-bind race with other processes applies).
 */
export function pickFreePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((res, rej) => {
    const s = createNetServer();
    s.once("error", rej);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => res(port));
    });
  });
}

/** `METATRAIN_METRICS_PORT`, default 9464. */
export const metricsPortFromEnv = (env: Env = process.env): number => portFromEnv("METATRAIN_METRICS_PORT", DEFAULT_METRICS_PORT, env);
/** `METATRAIN_TEMPORAL_METRICS_PORT`, default 9465; 0 asks for a free port (`pickFreePort`). */
export const temporalMetricsPortFromEnv = (env: Env = process.env): number => portFromEnv("METATRAIN_TEMPORAL_METRICS_PORT", DEFAULT_TEMPORAL_METRICS_PORT, env);
/** `METATRAIN_METRICS_HOST`, default 0.0.0.0. */
export const metricsHostFromEnv = (env: Env = process.env): string => env.METATRAIN_METRICS_HOST?.trim() || DEFAULT_METRICS_HOST;

export interface MetricsServerOptions {
  /** Registry to serve. */
  registry: Registry;
  /** Port; 0 picks a free one (tests). Default `METATRAIN_METRICS_PORT`, else 9464. */
  port?: number;
  /** Bind address. Default `METATRAIN_METRICS_HOST`, else 0.0.0.0. */
  host?: string;
  /** `/healthz` answers 200 while this returns true, else 503. Default: always ready. */
  ready?: () => boolean;
}

export interface MetricsServer {
  /** The port bound (the real one when 0 was asked for). */
  port: number;
  /** `http://<host>:<port>` (127.0.0.1 when bound to every interface). */
  url: string;
  /** Stop accepting connections and close idle ones. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Serve `GET /metrics` (the registry in Prometheus text format) and `GET /healthz` (200 `ok` when
 * `ready()`, else 503 `not ready`) until `close()`. Resolves once listening; rejects when the port
 * is taken (EADDRINUSE), naming the environment variable to change.
 */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { registry } = opts;
  const ready = opts.ready ?? (() => true);
  const port = opts.port ?? metricsPortFromEnv();
  const host = opts.host ?? metricsHostFromEnv();

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res);
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const head = req.method === "HEAD";
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store" });
      res.end(head ? undefined : body);
    };
    if (req.method !== "GET" && !head) {
      res.setHeader("Allow", "GET, HEAD");
      return send(405, "text/plain; charset=utf-8", "method not allowed\n");
    }
    if (path === "/metrics") {
      try {
        const body = await registry.metrics();
        return send(200, registry.contentType, body);
      } catch (e) {
        return send(500, "text/plain; charset=utf-8", `collecting metrics failed: ${e instanceof Error ? e.message : String(e)}\n`);
      }
    }
    if (path === "/healthz") {
      let ok = false;
      try {
        ok = ready();
      } catch {
        ok = false;
      }
      return ok ? send(200, "text/plain; charset=utf-8", "ok\n") : send(503, "text/plain; charset=utf-8", "not ready\n");
    }
    return send(404, "text/plain; charset=utf-8", "not found: try /metrics or /healthz\n");
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      server.off("listening", onListening);
      if (e.code === "EADDRINUSE") {
        reject(new Error(`metrics port ${host}:${port} is in use: set METATRAIN_METRICS_PORT to a free port (0 picks one)`, { cause: e }));
      } else reject(e);
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(port, host);
  });
  // Scrapes are short; do not let an idle keep-alive connection hold the process open on close.
  server.keepAliveTimeout = 5_000;
  const bound = (server.address() as AddressInfo).port;
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    port: bound,
    url: `http://${urlHost}:${bound}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      })),
  };
}

/**
 * Histogram boundaries, in seconds, for the Temporal SDK histograms metatrain graphs and alerts on.
 * The SDK's defaults jump 10 → 100 → 1000 s; a backlog alert at 60 s needs finer steps.
 */
export const TEMPORAL_HISTOGRAM_BUCKETS: Readonly<Record<string, number[]>> = {
  activity_schedule_to_start_latency: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
  activity_execution_latency: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
  workflow_task_schedule_to_start_latency: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
};

/**
 * Temporal SDK series that infra/prometheus/rules.yml and the dashboard use, as the options of
 * `temporalRuntimeTelemetry` name them (checked against @temporalio/worker 1.24's exporter).
 */
export const TEMPORAL_SDK_METRICS = [
  "temporal_activity_schedule_to_start_latency_seconds",
  "temporal_activity_execution_latency_seconds",
  "temporal_activity_execution_failed_total",
  "temporal_worker_task_slots_used",
  "temporal_worker_task_slots_available",
  "temporal_num_pollers",
  "temporal_activity_poll_no_task_total",
] as const;

export interface TemporalTelemetryOptions {
  /** Bind address. Default `METATRAIN_METRICS_HOST`, else 0.0.0.0. */
  host?: string;
  /** Labels on every SDK series, e.g. `{ role: "gpu", worker: hostname() }`. Default none. */
  globalTags?: Record<string, string>;
}

/**
 * Options for `Runtime.install(...)` that export the Temporal SDK's own metrics (schedule-to-start
 * latency, task slots, pollers, activity failures) in Prometheus format on `port`, at `/metrics`.
 * Names come out as `temporal_<name>` with `_seconds` on durations and `_total` on counters, e.g.
 * `temporal_activity_schedule_to_start_latency_seconds_bucket`, `temporal_worker_task_slots_used`,
 * `temporal_activity_execution_failed_total` (the names infra/ rules and the dashboard use).
 *
 * `Runtime.install` must run once, before the first `NativeConnection` or `Worker` is created.
 * Port 0 is not useful here: the SDK does not say which port it bound.
 */
export function temporalRuntimeTelemetry(port: number = temporalMetricsPortFromEnv(), opts: TemporalTelemetryOptions = {}): RuntimeOptions {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new RangeError(`Temporal metrics port ${port} is not a port number: set METATRAIN_TEMPORAL_METRICS_PORT to an integer in 1..65535`);
  }
  const host = opts.host ?? metricsHostFromEnv();
  const bindAddress = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return {
    telemetryOptions: {
      metrics: {
        ...(opts.globalTags ? { globalTags: { ...opts.globalTags } } : {}),
        prometheus: {
          bindAddress,
          countersTotalSuffix: true,
          unitSuffix: true,
          useSecondsForDurations: true,
          histogramBucketOverrides: Object.fromEntries(Object.entries(TEMPORAL_HISTOGRAM_BUCKETS).map(([k, v]) => [k, [...v]])),
        },
      },
    },
  };
}
