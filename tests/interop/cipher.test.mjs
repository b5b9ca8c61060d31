// Interop: cipher (fio-l2 Rust CLI vs @fioprotocol/fiojs). Run through ./run.sh; helpers.mjs explains the seed.
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import * as h from "./helpers.mjs";

const { CONTENT_FIELDS, withCtx, Fio, N, PrivateKey, PublicKey, Rng, SEED_KEYS, VECTOR_CIPHER, VECTOR_CONTENT, VECTOR_CONTENT_FULL, VECTOR_IV, ecdhX, keyPair, randomContent, randomPrivateKey, rustJson, rustOk, rustRun } = h;

before(() => h.banner("cipher.test.mjs"));

describe("3. content cipher", () => {
  test("fixed vectors: alice/bob shared secret, new_funds_content vector with the fixed IV, hashA of seed ''", () => {
    const { alice, bob } = SEED_KEYS;
    const cipher = Fio.createSharedCipher({ privateKey: alice.wif, publicKey: bob.pub });
    const secret = "a71b4ec5a9577926a1d2aa1d9d99327fd3b68f6a1ea597200a0d890bd3331df300a2d49fec0b2b3e6969ce9263c5d6cf47c191c1ef149373ecc9f0d98116b598";
    assert.equal(cipher.sharedSecret.toString("hex"), secret);
    assert.equal(rustJson(["sig", "shared-secret", "--public-key", bob.pub], { key: alice.wif }).shared_secret, secret);
    assert.equal(cipher.encrypt("new_funds_content", VECTOR_CONTENT_FULL, Buffer.from(VECTOR_IV, "hex")), VECTOR_CIPHER);
    assert.equal(
      rustOk(["encrypt", "--public-key", bob.pub, "--content-type", "new_funds_content", "--iv", VECTOR_IV, JSON.stringify(VECTOR_CONTENT)], { key: alice.wif }),
      VECTOR_CIPHER,
    );
    assert.deepEqual(
      JSON.parse(rustOk(["decrypt", "--public-key", alice.pub, "--content-type", "new_funds_content", VECTOR_CIPHER], { key: bob.wif })),
      VECTOR_CONTENT_FULL,
    );
    const z = SEED_KEYS[""];
    const self = Fio.createSharedCipher({ privateKey: z.wif, publicKey: z.pub });
    const k33 = PublicKey(z.pub).toBuffer();
    assert.equal(self.hashA(Buffer.alloc(0)), "0x7a5de2d59c72b94c67a192a9009484ef");
    assert.equal(self.hashA(k33), "0x2521bccef77d48793a7a80716e79a46d");
    assert.equal(rustJson(["sig", "shared-secret", "--public-key", z.pub], { key: z.wif }).hash_a, "7a5de2d59c72b94c67a192a9009484ef");
    assert.equal(rustJson(["sig", "shared-secret", "--public-key", z.pub, "--data", k33.toString("hex")], { key: z.wif }).hash_a, "2521bccef77d48793a7a80716e79a46d");
  });

  for (const type of Object.keys(CONTENT_FIELDS)) {
    test(`${type}: fiojs encrypt -> Rust decrypt; Rust encrypt -> fiojs decrypt; fixed IV gives identical base64`, () => {
      const rng = new Rng(`cipher/${type}`);
      for (let i = 0; i < N; i++) {
        const a = keyPair(randomPrivateKey(rng));
        const b = keyPair(randomPrivateKey(rng));
        const { full, sparse } = randomContent(rng, type);
        const ctx = `iteration ${i}: A ${a.wif} B ${b.wif} ECDH x ${ecdhX(a.wif, b.pub).toString("hex")} content ${JSON.stringify(sparse)}`;
        const aToB = Fio.createSharedCipher({ privateKey: a.wif, publicKey: b.pub });
        const bFromA = Fio.createSharedCipher({ privateKey: b.wif, publicKey: a.pub });

        // fiojs -> Rust
        const jsCipher = aToB.encrypt(type, full);
        const rsPlain = JSON.parse(rustOk(["decrypt", "--public-key", a.pub, "--content-type", type, jsCipher], { key: b.wif, ctx }));
        assert.deepEqual(rsPlain, full, ctx);

        // Rust -> fiojs (random IV chosen by Rust)
        const rsCipher = rustOk(["encrypt", "--public-key", b.pub, "--content-type", type, JSON.stringify(sparse)], { key: a.wif, ctx });
        assert.deepEqual(withCtx(ctx, () => bFromA.decrypt(type, rsCipher)), full, ctx);

        // fixed IV: byte-identical
        const iv = rng.bytes(16);
        const jsFixed = aToB.encrypt(type, full, iv);
        const rsFixed = rustOk(["encrypt", "--public-key", b.pub, "--content-type", type, "--iv", iv.toString("hex"), JSON.stringify(sparse)], { key: a.wif, ctx });
        assert.equal(rsFixed, jsFixed, `${ctx} iv ${iv.toString("hex")}`);
      }
    });
  }

  test("a string starting with U+FEFF: same bytes both ways; fiojs's decoder drops that BOM, Rust keeps it", () => {
    const { alice, bob } = SEED_KEYS;
    const type = "new_funds_content";
    const content = { payee_public_address: "\ufeffpayee", amount: "1", chain_code: "FIO", token_code: "FIO", memo: null, hash: null, offline_url: null };
    const aToB = Fio.createSharedCipher({ privateKey: alice.wif, publicKey: bob.pub });
    const bFromA = Fio.createSharedCipher({ privateKey: bob.wif, publicKey: alice.pub });
    const jsFixed = aToB.encrypt(type, content, Buffer.from(VECTOR_IV, "hex"));
    const rsFixed = rustOk(["encrypt", "--public-key", bob.pub, "--content-type", type, "--iv", VECTOR_IV, JSON.stringify(content)], { key: alice.wif });
    assert.equal(rsFixed, jsFixed);
    const rsPlain = JSON.parse(rustOk(["decrypt", "--public-key", alice.pub, "--content-type", type, jsFixed], { key: bob.wif }));
    assert.equal(rsPlain.payee_public_address, "\ufeffpayee");
    assert.equal(bFromA.decrypt(type, jsFixed).payee_public_address, "payee");
  });

  test("shared secret and hashA: Rust `sig shared-secret` = fiojs createSharedCipher(...).sharedSecret / hashA", () => {
    const rng = new Rng("cipher/secret");
    for (let i = 0; i < N; i++) {
      const a = keyPair(randomPrivateKey(rng));
      const b = keyPair(randomPrivateKey(rng));
      const cipher = Fio.createSharedCipher({ privateKey: a.wif, publicKey: b.pub });
      const data = rng.bool(0.3) ? PublicKey(b.pub).toBuffer() : rng.bytes(rng.int(0, 100));
      const ctx = `A ${a.wif} B ${b.pub} data ${data.toString("hex")} x ${ecdhX(a.wif, b.pub).toString("hex")}`;
      const r = rustJson(["sig", "shared-secret", "--public-key", b.pub, "--data", data.toString("hex")], { key: a.wif, ctx });
      assert.equal(r.shared_secret, cipher.sharedSecret.toString("hex"), ctx);
      assert.equal("0x" + r.hash_a, cipher.hashA(data), ctx);
      // symmetric on the Rust side too
      const r2 = rustJson(["sig", "shared-secret", "--public-key", a.pub, "--data", data.toString("hex")], { key: b.wif, ctx });
      assert.deepEqual(r2, r, ctx);
    }
  });

  // fiojs's getSharedSecret hashes `P.affineX.toBuffer({size: 32})`: bigi's toBuffer
  // takes a number, so the object argument means "no padding" and an x coordinate
  // below 2^248 is hashed WITHOUT its leading zero byte(s). About 1 key pair in 256.
  test("ECDH x coordinate with a leading zero byte (fiojs hashes x without its leading zeros)", () => {
    const alice = PrivateKey.fromSeed("alice");
    const n = 174; // the first n for which x(alice, seed "zero-x-n") starts with a zero byte
    const other = keyPair(PrivateKey.fromSeed(`zero-x-${n}`));
    const x = ecdhX(alice, other.pub);
    const cipher = Fio.createSharedCipher({ privateKey: alice, publicKey: other.pub });
    assert.equal(x[0], 0, "test setup: x must start with a zero byte");
    const ctx = `private ${alice.toWif()} (seed alice), public ${other.pub} (seed zero-x-${n}), x = ${x.toString("hex")}`;
    const problems = [];
    const r = rustJson(["sig", "shared-secret", "--public-key", other.pub], { key: alice.toWif() });
    if (r.shared_secret !== cipher.sharedSecret.toString("hex")) {
      problems.push(`shared secret: Rust ${r.shared_secret} (SHA-512 of 32-byte x), fiojs ${cipher.sharedSecret.toString("hex")}`);
    }
    const js = cipher.encrypt("new_funds_content", VECTOR_CONTENT_FULL, Buffer.from(VECTOR_IV, "hex"));
    const dec = rustRun(["decrypt", "--public-key", alice.toPublic().toString(), "--content-type", "new_funds_content", js], { key: other.wif });
    if (dec.status !== 0) problems.push(`Rust cannot decrypt fiojs's ${js}: ${dec.stderr.trim()}`);
    const rs = rustOk(["encrypt", "--public-key", other.pub, "--content-type", "new_funds_content", "--iv", VECTOR_IV, JSON.stringify(VECTOR_CONTENT)], { key: alice.toWif() });
    try {
      Fio.createSharedCipher({ privateKey: other.wif, publicKey: alice.toPublic() }).decrypt("new_funds_content", rs);
    } catch (e) {
      problems.push(`fiojs cannot decrypt Rust's ${rs}: ${e.message}`);
    }
    assert.deepEqual(problems, [], ctx);
  });
});
