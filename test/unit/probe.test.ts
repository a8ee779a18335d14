// The worker's start-up store check: what passes, what is retried, what fails at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { StoreAccessDenied, StoreUnavailable, type BlobStore } from "../../storage/blobstore.js";
import { MemoryBlobStore } from "../../storage/memory-store.js";
import { probeStore } from "../../storage/probe.js";

/** A store whose put fails with `errors` in turn, then behaves as `inner`. */
function failing(inner: BlobStore, errors: Error[]): BlobStore & { puts: number } {
  const s = Object.create(inner) as BlobStore & { puts: number };
  s.puts = 0;
  s.put = async (k, b, o) => {
    s.puts++;
    const e = errors.shift();
    if (e) throw e;
    return inner.put(k, b, o);
  };
  return s;
}

test("a working store passes and keeps nothing of the probe", async () => {
  const store = new MemoryBlobStore();
  await probeStore(store, { name: "gpu-1" });
  assert.deepEqual(await store.list(""), []);
});

test("an unreachable store is retried until it answers (a server still starting)", async () => {
  const store = failing(new MemoryBlobStore(), [new StoreUnavailable("connect ECONNREFUSED"), new StoreUnavailable("connect ECONNREFUSED")]);
  await probeStore(store, { name: "w", retryMs: 1 });
  assert.equal(store.puts, 3);
});

test("access denied fails at once; unreachable fails after the deadline; other bytes back fail", async () => {
  const denied = failing(new MemoryBlobStore(), [new StoreAccessDenied("SignatureDoesNotMatch", { suggestion: "check AWS_SECRET_ACCESS_KEY" })]);
  await assert.rejects(probeStore(denied, { name: "w", retryMs: 1 }), StoreAccessDenied);
  assert.equal(denied.puts, 1, "not retried");
  const down = failing(new MemoryBlobStore(), Array.from({ length: 1000 }, () => new StoreUnavailable("connect ECONNREFUSED")));
  await assert.rejects(probeStore(down, { name: "w", deadlineMs: 30, retryMs: 5 }), StoreUnavailable);
  assert.ok(down.puts >= 2 && down.puts < 50, `${down.puts} tries in 30 ms`);
  const liar = new MemoryBlobStore();
  liar.get = async () => new Uint8Array(32);
  await assert.rejects(probeStore(liar, { name: "w" }), /gave back other bytes/);
});
