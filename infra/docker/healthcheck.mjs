// Container health check: GET /healthz on the worker's metrics port; exit 0 when it answers 200, else 1.
// The port comes from METATRAIN_METRICS_PORT, which the images set (ENV) to telemetry's default;
// METATRAIN_HEALTHCHECK_TIMEOUT_MS (default 4000) bounds the request.
const port = process.env.METATRAIN_METRICS_PORT?.trim();
if (!port) {
  console.error("healthcheck: METATRAIN_METRICS_PORT is not set (the image sets it; set it to the worker's metrics port)");
  process.exit(1);
}
const timeoutMs = Number(process.env.METATRAIN_HEALTHCHECK_TIMEOUT_MS ?? 4000);
const url = `http://127.0.0.1:${port}/healthz`;
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (res.status !== 200) {
    console.error(`healthcheck: ${url} answered ${res.status}`);
    process.exit(1);
  }
  process.exit(0);
} catch (e) {
  console.error(`healthcheck: ${url} unreachable: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
