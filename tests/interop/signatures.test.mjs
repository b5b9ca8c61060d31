// Interop: signatures (fio-l2 Rust CLI vs @fioprotocol/fiojs). Run through ./run.sh; helpers.mjs explains the seed.
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import * as h from "./helpers.mjs";

const { Ecc, N_ORDER, N_SIG, Rng, SEED_KEYS, Signature, bigOf, firstAttemptCanonical, fiojsRetries, highSCopy, isCanonical, randomPrivateKey, rustJson, rustRun, sha256 } = h;

before(() => h.banner("signatures.test.mjs"));

describe("2. signatures", () => {
  test("fixed vectors: seed '' signs 'I am alive' and 'hello' (both sides)", () => {
    const wif = SEED_KEYS[""].wif;
    for (const [text, sig] of [
      ["I am alive", "SIG_K1_KVpwCb6GGak79nnGbfE8inSu6yv4i14b3PFkQWLzCu6QoqLyrZfBq6dh7zq7ZUV1edPCaWZ8vjyrmkg7DmX3ogeZnTRKmf"],
      ["hello", "SIG_K1_K5V52rsHF1J3pygsqnu4a34VAYddkLTUoXDvQyz68aM4KuzBedXTp7HTSndhCLjAqC9fXHtvrKvQWTVfutWuwJdZt4Yia7"],
    ]) {
      assert.equal(Ecc.sign(text, wif), sig);
      const digest = sha256(Buffer.from(text)).toString("hex");
      assert.equal(rustJson(["sig", "sign", "--digest", digest], { key: wif }).signature, sig, text);
    }
  });

  test(`random digests (${N_SIG}): fiojs signHash === Rust sig sign, byte for byte; each side verifies/recovers the other's`, (t) => {
    const rng = new Rng("sig/random");
    const keys = Array.from({ length: 12 }, () => randomPrivateKey(rng)).map((pk) => ({ pk, wif: pk.toWif(), pub: pk.toPublic().toString() }));
    let retried = 0;
    for (let i = 0; i < N_SIG; i++) {
      const { pk, wif, pub } = keys[i % keys.length];
      const other = keys[(i + 1) % keys.length].pub;
      const digest = rng.bytes(32);
      const hex = digest.toString("hex");
      const retry = !firstAttemptCanonical(digest, pk);
      if (retry) retried++;
      const ctx = `wif ${wif} digest ${hex} (fiojs ${retry ? "retried" : "did not retry"})`;

      const jsSig = Signature.signHash(digest, pk).toString();
      const rsSig = rustJson(["sig", "sign", "--digest", hex], { key: wif }).signature;
      assert.equal(rsSig, jsSig, ctx);

      // Rust accepts fiojs's signature (and rejects it for another key or digest)...
      assert.deepEqual(rustJson(["sig", "verify", "--digest", hex, "--public-key", pub, jsSig]), { valid: true }, ctx);
      assert.deepEqual(rustJson(["sig", "recover", "--digest", hex, jsSig]), { public_key: pub }, ctx);
      assert.equal(rustRun(["sig", "verify", "--digest", hex, "--public-key", other, jsSig]).status, 1, ctx);
      const flipped = Buffer.from(digest);
      flipped[rng.int(0, 31)] ^= 1 << rng.int(0, 7);
      assert.equal(rustRun(["sig", "verify", "--digest", flipped.toString("hex"), "--public-key", pub, jsSig]).status, 1, ctx);

      // ...and fiojs accepts Rust's (fiojs recovery is slow: every third digest).
      const parsed = Signature.fromString(rsSig);
      assert.ok(parsed, `fiojs cannot parse ${rsSig}`);
      assert.equal(parsed.verifyHash(digest, pub), true, ctx);
      assert.ok(isCanonical(parsed.toBuffer()), `${ctx}: not canonical`);
      assert.ok(bigOf(parsed.toBuffer().subarray(33)) <= N_ORDER / 2n, `${ctx}: high S`);
      if (i % 3 === 0) {
        assert.equal(parsed.recoverHash(digest).toString(), pub, ctx);
        assert.equal(parsed.verifyHash(flipped, pub), false, ctx);
      }
    }
    t.diagnostic(`${retried}/${N_SIG} random digests needed fiojs's non-canonical retry`);
    console.log(`signatures.test.mjs: ${retried}/${N_SIG} random digests needed fiojs's non-canonical retry`);
    if (N_SIG >= 30) assert.ok(retried > 0, "no digest exercised the retry path");
  });

  test("digests chosen to need 1, 2, 3+ canonical retries: identical signatures", (t) => {
    const rng = new Rng("sig/retries");
    const pk = randomPrivateKey(rng);
    const wif = pk.toWif();
    const want = { 1: 3, 2: 3, 3: 1 }; // retries (3 = "3 or more") -> how many cases
    const found = [];
    for (let tries = 0; Object.values(want).some((n) => n > 0) && tries < 2000; tries++) {
      const digest = rng.bytes(32);
      const r = fiojsRetries(digest, pk);
      const bucket = Math.min(r, 3);
      if (want[bucket] > 0) { want[bucket]--; found.push([digest, r]); }
    }
    assert.deepEqual(want, { 1: 0, 2: 0, 3: 0 }, "could not find digests needing retries");
    for (const [digest, r] of found) {
      const hex = digest.toString("hex");
      const jsSig = Signature.signHash(digest, wif).toString();
      const rsSig = rustJson(["sig", "sign", "--digest", hex], { key: wif }).signature;
      assert.equal(rsSig, jsSig, `wif ${wif} digest ${hex} (fiojs needed ${r} retries)`);
    }
    t.diagnostic(`retry counts checked: ${found.map(([, r]) => r).join(", ")}`);
  });

  test("Rust rejects a high-S (malleated) copy of a valid fiojs signature that fiojs itself accepts", () => {
    const rng = new Rng("sig/high-s");
    for (let i = 0; i < 5; i++) {
      const pk = randomPrivateKey(rng);
      const pub = pk.toPublic().toString();
      const digest = rng.bytes(32);
      const highSig = Signature.fromString(highSCopy(Signature.signHash(digest, pk).toString()));
      assert.equal(highSig.verifyHash(digest, pub), true, "fiojs accepts high S (sanity)");
      const r = rustRun(["sig", "verify", "--digest", digest.toString("hex"), "--public-key", pub, highSig.toString()]);
      assert.equal(r.status, 1, `Rust accepted high-S ${highSig.toString()}`);
    }
  });
});
