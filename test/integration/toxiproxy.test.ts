// The fault-proxy harness against a real toxiproxy-server: each toxic the chaos test relies on does what it says, measured on a loopback echo server.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect, type Server } from "node:net";
import { skipUnlessToxiproxy, startToxiproxy, type ToxiProxy, type ToxiproxyServer } from "../harness/toxiproxy.js";

/** Send `payload` through host:port and resolve with what came back, how long it took, and how the connection ended. */
function roundTrip(address: string, payload: Buffer, timeoutMs = 5_000): Promise<{ echoed: number; ms: number; end: "ok" | "reset" | "refused" | "closed" | "timeout" }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
  return new Promise((res) => {
    const t0 = performance.now();
    let echoed = 0;
    const s = connect({ host, port });
    const finish = (end: "ok" | "reset" | "refused" | "closed" | "timeout") => {
      clearTimeout(timer);
      s.destroy();
      res({ echoed, ms: performance.now() - t0, end });
    };
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    s.on("connect", () => s.write(payload));
    s.on("data", (d: Buffer) => {
      echoed += d.length;
      if (echoed >= payload.length) finish("ok");
    });
    s.on("error", (e: NodeJS.ErrnoException) => finish(e.code === "ECONNRESET" ? "reset" : e.code === "ECONNREFUSED" ? "refused" : "closed"));
    s.on("close", () => finish(echoed >= payload.length ? "ok" : "closed"));
  });
}

describe("toxiproxy harness", { skip: skipUnlessToxiproxy() }, () => {
  let echo: Server;
  let server: ToxiproxyServer;
  let proxy: ToxiProxy;
  const small = Buffer.alloc(100, 1);

  before(async () => {
    echo = createServer((c) => {
      c.on("error", () => undefined); // the proxy resets these on purpose
      c.pipe(c);
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
    server = await startToxiproxy({ seed: 1 });
    proxy = await server.createProxy("echo", `127.0.0.1:${(echo.address() as { port: number }).port}`);
  });

  after(async () => {
    await server?.stop();
    await new Promise((r) => echo?.close(r));
  });

  test("passes data through untouched, and adds latency while a latency toxic is on", async () => {
    const plain = await roundTrip(proxy.listen, small);
    assert.equal(plain.end, "ok");
    await proxy.addToxic({ name: "slow", type: "latency", attributes: { latency: 300, jitter: 0 } });
    const slow = await roundTrip(proxy.listen, small);
    await proxy.removeToxic("slow");
    assert.equal(slow.end, "ok");
    // One downstream chunk delayed 300 ms; the plain round trip is a few ms.
    assert.ok(slow.ms >= 290, `with 300 ms latency the round trip took ${slow.ms.toFixed(0)} ms`);
    await proxy.removeToxic("slow"); // removing a missing toxic is not an error
  });

  test("reset_peer resets the connection; timeout holds the data", async () => {
    await proxy.addToxic({ name: "rst", type: "reset_peer", stream: "upstream", attributes: { timeout: 0 } });
    assert.equal((await roundTrip(proxy.listen, small)).end === "ok", false, "data got through a reset_peer toxic");
    await proxy.removeToxic("rst");
    await proxy.addToxic({ name: "hold", type: "timeout", attributes: { timeout: 0 } });
    const held = await roundTrip(proxy.listen, small, 700);
    await proxy.removeToxic("hold");
    assert.equal(held.end, "timeout");
    assert.equal(held.echoed, 0);
  });

  test("a bandwidth cap slows a large transfer to about its rate", async () => {
    await proxy.addToxic({ name: "thin", type: "bandwidth", attributes: { rate: 100 } }); // KB/s
    const big = await roundTrip(proxy.listen, Buffer.alloc(50_000, 2));
    await proxy.removeToxic("thin");
    assert.equal(big.end, "ok");
    // 50 KB at 100 KB/s: about 0.5 s (toxiproxy's KB is 1000 bytes).
    assert.ok(big.ms >= 400, `50 KB at 100 KB/s took ${big.ms.toFixed(0)} ms`);
  });

  test("disabled, the proxy refuses connections; enabled again, it serves on the same address", async () => {
    await proxy.setEnabled(false);
    assert.equal((await roundTrip(proxy.listen, small)).end, "refused");
    await proxy.setEnabled(true);
    assert.equal((await roundTrip(proxy.listen, small)).end, "ok");
    await server.reset();
    assert.equal((await roundTrip(proxy.listen, small)).end, "ok");
  });
});
