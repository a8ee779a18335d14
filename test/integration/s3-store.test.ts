// S3 blob store against a real S3-compatible server (rclone serve s3): round trips, multipart, integrity, errors.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { BlobCorrupt, BlobNotFound, StoreAccessDenied, StoreUnavailable, openStore, type OpenStoreOptions } from "../../storage/blobstore.js";
import { ENVELOPE_HEADER_BYTES } from "../../storage/envelope.js";
import { S3BlobStore } from "../../storage/s3-store.js";
import { shardKey, paramsKey, contentAddress } from "../../storage/keys.js";
import { encodeArrays, decodeArrays } from "../../meta/params.js";
import { skipUnlessS3Server, startS3Server, type S3TestServer } from "../harness/s3-server.js";

const MiB = 1024 * 1024;

/** A tensor blob of about `n` float32 values, as activities store them. */
function tensorBlob(n: number, seed = 1): Uint8Array {
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.fround(Math.sin(seed * 1000 + i));
  return encodeArrays([{ name: "w", shape: [n], data }], { seed });
}

/** A port on 127.0.0.1 that nothing listens on (bound by the OS, then released). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, "127.0.0.1", res));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

describe("S3 store against rclone serve s3", { skip: skipUnlessS3Server() }, () => {
  let server: S3TestServer;
  const stores: S3BlobStore[] = [];
  const open = async (uri: string, env: Record<string, string>, s3: OpenStoreOptions["s3"] = {}): Promise<S3BlobStore> => {
    const s = (await openStore(uri, env, { s3 })) as S3BlobStore;
    stores.push(s);
    return s;
  };
  const openOk = (prefix = "it", s3: OpenStoreOptions["s3"] = {}) => open(`s3://${server.bucket}/${prefix}`, server.env(), s3);

  before(async () => {
    const t0 = performance.now();
    server = await startS3Server();
    console.log(`# rclone ${server.binary} at ${server.endpoint} ready in ${(performance.now() - t0).toFixed(0)} ms`);
  });
  after(async () => {
    for (const s of stores) s.destroy();
    await server?.stop();
  });

  test("a small tensor blob round-trips; exists, list and delete work under the prefix", async () => {
    const store = await openOk("rt");
    assert.ok(store instanceof S3BlobStore);
    const bytes = tensorBlob(1000);
    const key = paramsKey("run1", contentAddress(bytes));
    await store.put(key, bytes);
    const back = await store.get(key);
    assert.deepEqual(back, bytes);
    assert.equal(decodeArrays(back).tensors[0]!.data.length, 1000);
    assert.equal(await store.exists(key), true);
    assert.equal(await store.exists("runs/run1/params/missing.mtt"), false);
    for (const i of [2, 0, 1]) await store.put(shardKey("run1", 3, i), tensorBlob(10, i));
    assert.deepEqual(await store.list("runs/run1/iter/"), [0, 1, 2].map((i) => shardKey("run1", 3, i)));
    assert.deepEqual((await store.list("")).length, 4);
    const other = await openOk("other-prefix");
    assert.deepEqual(await other.list(""), [], "a store sees only its own prefix");
    const head = await store.client.send(new HeadObjectCommand({ Bucket: server.bucket, Key: `rt/${key}` }));
    assert.equal(head.Metadata?.["sha256"], contentAddress(bytes), "the checksum is the object's x-amz-meta-sha256");
    await store.delete(shardKey("run1", 3, 1));
    await store.delete(shardKey("run1", 3, 1));
    assert.deepEqual(await store.list("runs/run1/iter/00000003/"), [shardKey("run1", 3, 0), shardKey("run1", 3, 2)]);
    await assert.rejects(store.get(shardKey("run1", 3, 1)), (e: unknown) => e instanceof BlobNotFound && !e.retryable && /shard-0001/.test(e.message));
  });

  test("a 20 MiB blob goes up as a multipart upload and round-trips", async () => {
    const store = await openOk("mp", { multipartThresholdBytes: 5 * MiB, partSizeBytes: 5 * MiB });
    const commands: string[] = [];
    store.client.middlewareStack.add(
      (next, context) => (args) => {
        commands.push(context.commandName ?? "?");
        return next(args);
      },
      { step: "initialize", name: "recordCommands" },
    );
    const bytes = tensorBlob((20 * MiB) / 4);
    const t0 = performance.now();
    await store.put("runs/big/params/p.mtt", bytes);
    const t1 = performance.now();
    const back = await store.get("runs/big/params/p.mtt");
    const t2 = performance.now();
    console.log(`# ${(bytes.length / MiB).toFixed(1)} MiB: put ${(t1 - t0).toFixed(0)} ms, get+verify ${(t2 - t1).toFixed(0)} ms`);
    assert.equal(back.length, bytes.length);
    assert.ok(Buffer.from(back).equals(Buffer.from(bytes)));
    // 20 MiB plus the blob's small header, in 5 MiB parts: 5 parts.
    assert.deepEqual(commands.filter((c) => c !== "GetObjectCommand"), [
      "CreateMultipartUploadCommand", ...Array(5).fill("UploadPartCommand"), "CompleteMultipartUploadCommand",
    ]);
    const head = await store.client.send(new HeadObjectCommand({ Bucket: server.bucket, Key: "mp/runs/big/params/p.mtt" }));
    assert.equal(head.Metadata?.["sha256"], contentAddress(bytes), "multipart uploads carry the checksum too");
    assert.equal(head.ContentLength, ENVELOPE_HEADER_BYTES + bytes.length, "the object is the envelope: header line + payload");

    commands.length = 0;
    await store.put("runs/big/params/small.mtt", tensorBlob(1000));
    assert.deepEqual(commands, ["PutObjectCommand"], "below the threshold: one PutObject");
  });

  test("tampered objects are BlobCorrupt naming the key, with or without metadata; objects without metadata or envelope still read", async () => {
    const store = await openOk("tamper");
    const good = tensorBlob(100);
    const bad = tensorBlob(100, 2);
    const isCorrupt = (key: string, reason: RegExp) => (e: unknown) =>
      e instanceof BlobCorrupt && e.code === "BLOB_CORRUPT" && !e.retryable && e.key === key && e.message.includes(key) && reason.test(e.message);

    // A legacy object (no envelope) replaced by another writer that kept the old metadata checksum.
    await store.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: "tamper/a.mtt", Body: bad, Metadata: { sha256: contentAddress(good) } }));
    await assert.rejects(store.get("a.mtt"), isCorrupt("a.mtt", /SHA-256 mismatch/));

    // Written by a tool that stores no checksum at all (an old store copied with `aws s3 cp`): read as it is.
    await store.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: "tamper/b.mtt", Body: good }));
    assert.deepEqual(await store.get("b.mtt"), good);

    // A bit flipped in the payload at rest, file size and time kept: rclone still serves the metadata.
    await store.put("c.mtt", good);
    const path = join(server.dataDir, server.bucket, "tamper", "c.mtt");
    const { atime, mtime } = statSync(path);
    const disk = readFileSync(path);
    disk[ENVELOPE_HEADER_BYTES + 50]! ^= 0x10;
    writeFileSync(path, disk);
    utimesSync(path, atime, mtime);
    await assert.rejects(store.get("c.mtt"), isCorrupt("c.mtt", /SHA-256 mismatch/));

    // Rewritten on disk with a new time: rclone drops the object's metadata; the envelope still catches the flip…
    await store.put("d.mtt", good);
    const dPath = join(server.dataDir, server.bucket, "tamper", "d.mtt");
    const sealed = readFileSync(dPath);
    const flipped = Buffer.from(sealed);
    flipped[ENVELOPE_HEADER_BYTES + 50]! ^= 0x10;
    writeFileSync(dPath, flipped);
    const head = await store.client.send(new HeadObjectCommand({ Bucket: server.bucket, Key: "tamper/d.mtt" }));
    assert.equal(head.Metadata?.["sha256"], undefined, "rclone dropped the metadata of a file changed behind its back");
    await assert.rejects(store.get("d.mtt"), isCorrupt("d.mtt", /SHA-256 mismatch/));
    // …and the intact bytes without metadata read.
    writeFileSync(dPath, sealed);
    assert.deepEqual(await store.get("d.mtt"), good);

    // And a clean rewrite through the store heals the key.
    await store.put("a.mtt", good);
    assert.deepEqual(await store.get("a.mtt"), good);
  });

  test("wrong credentials are StoreAccessDenied with a suggestion about the keys", async () => {
    const badId = await open(`s3://${server.bucket}/it`, { ...server.env(), AWS_ACCESS_KEY_ID: "nobody-at-all" }, { maxAttempts: 1 });
    await assert.rejects(badId.get("x"), (e: unknown) =>
      e instanceof StoreAccessDenied && e.code === "STORE_ACCESS_DENIED" && !e.retryable &&
      /InvalidAccessKeyId/.test(e.message) && /AWS_ACCESS_KEY_ID/.test(e.suggestion ?? ""));
    await assert.rejects(badId.put("x", new Uint8Array(1)), StoreAccessDenied);
    await assert.rejects(badId.list(""), StoreAccessDenied);
    await assert.rejects(badId.exists("x"), StoreAccessDenied);
    const badSecret = await open(`s3://${server.bucket}/it`, { ...server.env(), AWS_SECRET_ACCESS_KEY: "wrong-secret-value" }, { maxAttempts: 1 });
    await assert.rejects(badSecret.put("x", new Uint8Array(1)), (e: unknown) =>
      e instanceof StoreAccessDenied && /SignatureDoesNotMatch/.test(e.message) && /AWS_SECRET_ACCESS_KEY/.test(e.suggestion ?? ""));
    await assert.rejects(badSecret.exists("x"), StoreAccessDenied, "HEAD has no error body: denied by status alone");
  });

  test("a missing bucket is StoreAccessDenied naming the bucket, for every operation", async () => {
    const store = await open("s3://no-such-bucket-here/p", server.env(), { maxAttempts: 1 });
    const isMissingBucket = (e: unknown) =>
      e instanceof StoreAccessDenied && /bucket "no-such-bucket-here" does not exist/.test(e.message) && /create the bucket/.test(e.suggestion ?? "");
    await assert.rejects(store.put("x", new Uint8Array(1)), isMissingBucket);
    await assert.rejects(store.get("x"), isMissingBucket);
    await assert.rejects(store.list(""), isMissingBucket);
    await assert.rejects(store.exists("x"), isMissingBucket, "not a plain false: the bucket itself is missing");
  });

  test("an unreachable endpoint is StoreUnavailable (retryable) naming it, quickly", async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const store = await open(`s3://${server.bucket}`, { ...server.env(), AWS_ENDPOINT_URL_S3: endpoint }, { maxAttempts: 2, connectionTimeoutMs: 500 });
    const t0 = performance.now();
    await assert.rejects(store.get("x"), (e: unknown) =>
      e instanceof StoreUnavailable && e.code === "STORE_UNAVAILABLE" && e.retryable &&
      /ECONNREFUSED/.test(e.message) && e.message.includes(endpoint) && (e.suggestion ?? "").includes(endpoint));
    await assert.rejects(store.put("x", new Uint8Array(1)), StoreUnavailable);
    await assert.rejects(store.exists("x"), StoreUnavailable);
    await assert.rejects(store.list(""), StoreUnavailable);
    const ms = performance.now() - t0;
    assert.ok(ms < 5_000, `four failed operations took ${ms.toFixed(0)} ms`);
  });

  test("a server that accepts but never answers is StoreUnavailable after the request timeout", async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => void sockets.push(s));
    await new Promise<void>((res) => silent.listen(0, "127.0.0.1", res));
    try {
      const endpoint = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
      const store = await open(`s3://${server.bucket}`, { ...server.env(), AWS_ENDPOINT_URL_S3: endpoint }, { maxAttempts: 1, requestTimeoutMs: 300 });
      const t0 = performance.now();
      await assert.rejects(store.get("x"), (e: unknown) => e instanceof StoreUnavailable && e.retryable && e.message.includes(endpoint));
      assert.ok(performance.now() - t0 < 5_000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((res) => silent.close(() => res()));
    }
  });
});
