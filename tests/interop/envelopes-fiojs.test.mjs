// Interop: v1 envelopes built and signed with fiojs, checked by the Rust CLI. Run through ./run.sh.
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import * as h from "./helpers.mjs";

const { ecdhX, envelopeDigest, envelopeId, Fio, highSCopy, jsEnvelope, keyPair, leadingZeroBits, N, packEnvelope, randomPrivateKey, Rng, rustJson, rustOk, rustRun, SEED_KEYS, Serialize, sha256, Signature, signEnvelopeJs, VECTOR_CHAIN_ID, VECTOR_CONTENT, VECTOR_CONTENT_FULL, VECTOR_ENVELOPE, VECTOR_ID, VECTOR_IV, VECTOR_PACKED } = h;

before(() => h.banner("envelopes-fiojs.test.mjs"));

describe("4a. v1 envelopes built by fiojs", () => {
  test("protocol-v1.md example: fiojs Serialize reproduces packed, id, pow_bits and the signature; Rust verifies it", () => {
    const packed = packEnvelope(VECTOR_ENVELOPE);
    assert.equal(packed.toString("hex"), VECTOR_PACKED);
    assert.equal(envelopeId(packed), VECTOR_ID);
    assert.equal(leadingZeroBits(sha256(packed)), 4);
    const digest = envelopeDigest(VECTOR_CHAIN_ID, packed);
    assert.equal(Signature.signHash(digest, SEED_KEYS.alice.wif).toString(), VECTOR_ENVELOPE.signature);
    assert.equal(Signature.fromString(VECTOR_ENVELOPE.signature).verifyHash(digest, SEED_KEYS.alice.pub), true);
    // the content is the content vector, made by fiojs
    const c = Fio.createSharedCipher({ privateKey: SEED_KEYS.alice.wif, publicKey: SEED_KEYS.bob.pub });
    assert.equal(c.encrypt("new_funds_content", VECTOR_CONTENT_FULL, Buffer.from(VECTOR_IV, "hex")), VECTOR_ENVELOPE.content);
    const r = rustJson(["message", "verify", "--chain-id", VECTOR_CHAIN_ID, "--now", String(VECTOR_ENVELOPE.created)], { input: JSON.stringify(VECTOR_ENVELOPE) });
    assert.deepEqual(r, { id: VECTOR_ID, pow_bits: 4, sender: "alice@wallet", recipient: "bob@wallet" });
    // Rust builds and signs the same envelope byte for byte
    const unsigned = rustOk(
      ["message", "new", "--sender", "alice@wallet", "--recipient", "bob@wallet", "--recipient-encrypt-key", SEED_KEYS.bob.pub,
        "--content-type", "new_funds_content", "--created", "1795000000", "--ttl", "2592000", "--nonce", "0", "--iv", VECTOR_IV,
        JSON.stringify(VECTOR_CONTENT)],
      { key: SEED_KEYS.alice.wif },
    );
    const signed = rustJson(["message", "sign", "--chain-id", VECTOR_CHAIN_ID], { key: SEED_KEYS.alice.wif, input: unsigned });
    assert.deepEqual(signed, { ...VECTOR_ENVELOPE, id: VECTOR_ID });
  });

  test("fiojs-built envelopes -> Rust `message verify`: accepted, same id and pow_bits", () => {
    const rng = new Rng("envelope/js->rust");
    for (let i = 0; i < N; i++) {
      const m = jsEnvelope(rng, { grind: i < 4 ? 8 + i : 0 });
      const input = JSON.stringify(m.json);
      const ctx = `iteration ${i}: chain ${m.chainId} sender wif ${m.sender.wif} encrypt wif ${m.senderEnc.wif} recipient wif ${m.recipient.wif} ECDH x ${ecdhX(m.senderEnc.wif, m.recipient.pub).toString("hex")}\n${input}`;
      const r = rustJson(["message", "verify", "--chain-id", m.chainId, "--now", String(m.env.created)], { input, ctx });
      assert.deepEqual(r, { id: m.id, pow_bits: m.powBits, sender: m.env.sender, recipient: m.env.recipient }, ctx);
      if (i < 4) assert.ok(r.pow_bits >= 8 + i, ctx);
      // the recipient's side: Rust decrypts the content with the recipient key and the sender encrypt key
      const plain = JSON.parse(rustOk(["decrypt", "--public-key", m.senderEnc.pub, "--content-type", m.type, m.env.content], { key: m.recipient.wif, ctx }));
      assert.deepEqual(plain, m.full, ctx);
      // an `id` on input is accepted when it matches
      assert.equal(rustRun(["message", "verify", "--chain-id", m.chainId, "--now", String(m.env.created)], { input: JSON.stringify({ ...m.json, id: m.id }) }).status, 0, ctx);
    }
  });

  test("tampered fiojs envelopes: every changed field makes Rust `message verify` exit 1", () => {
    const rng = new Rng("envelope/tamper");
    const otherChar = (s, at) => {
      const alnum = "abcdefghijklmnopqrstuvwxyz0123456789";
      let c;
      do c = alnum[rng.int(0, alnum.length - 1)]; while (c === s[at]);
      return s.slice(0, at) + c + s.slice(at + 1);
    };
    const charIndex = (addr) => { // a non-hyphen, non-@ position
      let at;
      do at = rng.int(0, addr.length - 1); while (addr[at] === "@" || addr[at] === "-");
      return at;
    };
    const rounds = Math.max(5, Math.ceil(N / 3));
    for (let i = 0; i < rounds; i++) {
      const m = jsEnvelope(rng);
      const now = String(m.env.created);
      const verify = (json, chainId = m.chainId) =>
        rustRun(["message", "verify", "--chain-id", chainId, "--now", now], { input: JSON.stringify(json) });
      assert.equal(verify(m.json).status, 0, "untampered envelope must verify");

      const otherKey = keyPair(randomPrivateKey(rng)).pub;
      const changed = { ...m.full, amount: m.full.amount + "1" };
      const cipher = Fio.createSharedCipher({ privateKey: m.senderEnc.wif, publicKey: m.recipient.pub });
      const iv = Buffer.from(m.env.content, "base64").subarray(0, 16);
      const highS = highSCopy(m.json.signature);
      // each: [name, tampered json, expect a signature failure (the rest is well-formed)]
      const cases = [
        ["content amount (same IV)", { ...m.json, content: cipher.encrypt(m.type, changed, iv) }, true],
        ["one content byte", (() => { const b = Buffer.from(m.env.content, "base64"); b[rng.int(0, b.length - 1)] ^= 1; return { ...m.json, content: b.toString("base64") }; })(), true],
        ["a char of recipient", { ...m.json, recipient: otherChar(m.env.recipient, charIndex(m.env.recipient)) }, true],
        ["a char of sender", { ...m.json, sender: otherChar(m.env.sender, charIndex(m.env.sender)) }, true],
        ["sender_key", { ...m.json, sender_key: otherKey }, true],
        ["sender_encrypt_key", { ...m.json, sender_encrypt_key: otherKey }, true],
        ["recipient_encrypt_key", { ...m.json, recipient_encrypt_key: otherKey }, true],
        ["created - 1", { ...m.json, created: m.env.created - 1 }, true],
        ["expires + 1", { ...m.json, expires: m.env.expires + 1 }, false],
        ["nonce ^ 1", { ...m.json, nonce: m.env.nonce === 2 ** 53 - 1 ? m.env.nonce - 1 : m.env.nonce + 1 }, true],
        ["content_type", { ...m.json, content_type: m.type === "new_funds_content" ? "record_obt_data_content" : "new_funds_content" }, true],
        ["version 2", { ...m.json, version: 2 }, false],
        ["signature by another key", { ...m.json, signature: signEnvelopeJs(m.env, m.chainId, randomPrivateKey(rng)).json.signature }, true],
        ["high-S copy of the signature", { ...m.json, signature: highS }, false],
        ["wrong id on input", { ...m.json, id: "00".repeat(32) }, false],
        ["unknown extra field", { ...m.json, memo: "x" }, false],
        ["missing signature", (() => { const j = { ...m.json }; delete j.signature; return j; })(), false],
      ];
      for (const [name, json, sigFailure] of cases) {
        const r = verify(json);
        assert.equal(r.status, 1, `round ${i}: tampering "${name}" was accepted\n${JSON.stringify(json)}`);
        assert.ok(r.stderr.trim().length > 0, `round ${i}: "${name}": no reason on stderr`);
        if (sigFailure) assert.match(r.stderr, /signature/i, `round ${i}: "${name}" should fail the signature check: ${r.stderr}`);
      }
      const otherChain = Buffer.from(m.chainId, "hex");
      otherChain[rng.int(0, 31)] ^= 1 << rng.int(0, 7);
      const r = verify(m.json, otherChain.toString("hex"));
      assert.equal(r.status, 1, `round ${i}: another chain id was accepted`);
      assert.match(r.stderr, /signature/i);
    }
  });
});
