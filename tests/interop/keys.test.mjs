// Interop: keys (fio-l2 Rust CLI vs @fioprotocol/fiojs). Run through ./run.sh; helpers.mjs explains the seed.
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import * as h from "./helpers.mjs";

const { Ecc, Fio, N, N_ORDER, Numeric, PrivateKey, PublicKey, Rng, SEED_KEYS, buf32, randomPrivateKey, randomString, rustJson } = h;

before(() => h.banner("keys.test.mjs"));

describe("1. keys", () => {
  test("fixed vectors: seeds '', alice, bob (both sides)", () => {
    for (const [seed, v] of Object.entries(SEED_KEYS)) {
      const js = PrivateKey.fromSeed(seed);
      assert.equal(js.toWif(), v.wif);
      assert.equal(js.toPublic().toString(), v.pub);
      const r = rustJson(["key", "new", `--seed=${seed}`]);
      assert.equal(r.private_key, v.wif, `seed ${JSON.stringify(seed)}`);
      assert.equal(r.public_key, v.pub);
      assert.equal(r.actor, Fio.accountHash(v.pub));
      if (v.actor) assert.equal(r.actor, v.actor);
    }
    for (const [pub, actor] of [
      ["FIO7isxEua78KPVbGzKemH4nj2bWE52gqj8Hkac3tc7jKNvpfWzYS", "p4hc54ppiofx"],
      ["FIO6cDpi7vPnvRwMEdXtLnAmFwygaQ8CzD7vqKLBJ2GfgtHBQ4PPy", "2odzomo2v4pe"],
      ["FIO859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2HqhToVM", "3ftmgtgiqmn2"],
    ]) {
      assert.equal(Fio.accountHash(pub), actor);
      assert.deepEqual(rustJson(["key", "inspect", pub]), { public_key: pub, actor });
    }
  });

  test("fiojs private keys -> Rust `key inspect` (WIF, PVT_K1_, FIO, PUB_K1_): same public key and actor", () => {
    const rng = new Rng("keys/fiojs->rust");
    const keys = [];
    for (let i = 0; i < N; i++) keys.push(randomPrivateKey(rng));
    // edge scalars: 1, n-1, small keys with leading zero bytes
    for (const d of [1n, 2n, N_ORDER - 1n, N_ORDER / 2n, 0xffn, 1n << 200n, (1n << 248n) - 1n, 1n << 255n]) {
      keys.push(PrivateKey.fromBuffer(buf32(d)));
    }
    for (const pk of keys) {
      const wif = pk.toWif();
      const pub = pk.toPublic().toString();
      const actor = Fio.accountHash(pub);
      const ctx = `wif ${wif}`;
      assert.deepEqual(rustJson(["key", "inspect", wif]), { public_key: pub, actor }, ctx);
      const pvtK1 = "PVT_K1_" + Ecc.key_utils.checkEncode(pk.toBuffer(), "K1");
      assert.deepEqual(rustJson(["key", "inspect", pvtK1]), { public_key: pub, actor }, ctx + " as " + pvtK1);
      assert.deepEqual(rustJson(["key", "inspect", pub]), { public_key: pub, actor }, ctx);
      const pubK1 = Numeric.publicKeyToString({ type: Numeric.KeyType.k1, data: pk.toPublic().toBuffer() });
      assert.ok(pubK1.startsWith("PUB_K1_"));
      assert.deepEqual(rustJson(["key", "inspect", pubK1]), { public_key: pub, actor }, ctx + " as " + pubK1);
    }
  });

  test("fiojs Ecc.randomKey() (OS entropy, not seeded) -> Rust `key inspect`", async () => {
    await Ecc.initialize();
    for (let i = 0; i < 5; i++) {
      const wif = await Ecc.randomKey();
      const pub = Ecc.privateToPublic(wif);
      assert.ok(pub.startsWith("FIO") && pub.length === 53, pub);
      assert.deepEqual(rustJson(["key", "inspect", wif]), { public_key: pub, actor: Fio.accountHash(pub) }, `wif ${wif}`);
    }
  });

  test("Rust `key new` -> fiojs PrivateKey.fromString: same public key, WIF round trip, actor = Fio.accountHash", () => {
    for (let i = 0; i < N; i++) {
      const r = rustJson(["key", "new"]);
      const ctx = JSON.stringify(r);
      assert.ok(PrivateKey.isWif(r.private_key), ctx);
      const pk = PrivateKey.fromString(r.private_key);
      assert.equal(pk.toWif(), r.private_key, ctx);
      assert.equal(pk.toPublic().toString(), r.public_key, ctx);
      assert.ok(PublicKey.isValid(r.public_key, "FIO"), ctx);
      assert.equal(Fio.accountHash(r.public_key), r.actor, ctx);
    }
  });

  test("`key new --seed X` = fiojs PrivateKey.fromSeed(X) (random unicode seeds)", () => {
    const rng = new Rng("keys/seed");
    const seeds = ["", "alice", "bob", " ", "-starts-with-dash", "--seed", "ünïcødé 🔑", "a".repeat(500), "line\nbreak\ttab"];
    for (let i = 0; i < N; i++) seeds.push(randomString(rng, 40).replace(/\u0000/g, "")); // argv cannot hold NUL
    for (const seed of seeds) {
      const js = PrivateKey.fromSeed(seed);
      const r = rustJson(["key", "new", `--seed=${seed}`]);
      const ctx = `seed ${JSON.stringify(seed)}`;
      assert.equal(r.private_key, js.toWif(), ctx);
      assert.equal(r.public_key, js.toPublic().toString(), ctx);
      assert.equal(r.actor, Fio.accountHash(r.public_key), ctx);
    }
  });
});
