// Interop: v1 envelopes built and signed by the Rust CLI, checked with fiojs. Run through ./run.sh.
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import * as h from "./helpers.mjs";

const { CONTENT_FIELDS, ENVELOPE_FIELDS, withCtx, ecdhX, envelopeDigest, envelopeId, Fio, keyPair, leadingZeroBits, N, packEnvelope, randomAddress, randomContent, randomPrivateKey, Rng, rustJson, rustOk, sha256, Signature } = h;

before(() => h.banner("envelopes-rust.test.mjs"));

describe("4b. v1 envelopes built by the Rust CLI", () => {
  test("Rust `message new` + `message sign` -> fiojs re-serializes, recomputes id/digest, verifies, re-signs identically, decrypts", () => {
    const rng = new Rng("envelope/rust->js");
    for (let i = 0; i < N; i++) {
      const sender = keyPair(randomPrivateKey(rng));
      const senderEnc = rng.bool(0.3) ? keyPair(randomPrivateKey(rng)) : sender;
      const recipient = keyPair(randomPrivateKey(rng));
      const type = rng.pick(Object.keys(CONTENT_FIELDS));
      const { full, sparse } = randomContent(rng, type);
      const senderAddr = randomAddress(rng);
      const recipientAddr = randomAddress(rng);
      const created = rng.int(1_600_000_000, 2 ** 32 - 1 - 2_592_000);
      const ttl = rng.int(1, 2_592_000);
      const nonce = rng.pick([0, rng.u53(), 2 ** 53 - 1]);
      const chainId = rng.bytes(32).toString("hex");
      const args = ["message", "new", "--sender", senderAddr, "--recipient", recipientAddr, "--recipient-encrypt-key", recipient.pub,
        "--content-type", type, "--created", String(created), "--ttl", String(ttl), "--nonce", String(nonce)];
      if (senderEnc !== sender) args.push("--sender-key", sender.pub);
      const iv = rng.bool(0.5) ? rng.bytes(16) : null;
      if (iv) args.push("--iv", iv.toString("hex"));
      args.push(JSON.stringify(sparse));
      const ctx = `iteration ${i}: sender ${sender.wif} encrypt ${senderEnc.wif} recipient ${recipient.wif} ECDH x ${ecdhX(senderEnc.wif, recipient.pub).toString("hex")} chain ${chainId} args ${JSON.stringify(args)}`;

      const unsigned = rustOk(args, { key: senderEnc.wif, ctx });
      const signed = rustJson(["message", "sign", "--chain-id", chainId], { key: sender.wif, input: unsigned, ctx });
      assert.deepEqual(Object.keys(signed).sort(), [...ENVELOPE_FIELDS, "signature", "id"].sort(), ctx);
      assert.equal(signed.version, 1, ctx);
      assert.equal(signed.content_type, type, ctx);
      assert.equal(signed.sender, senderAddr, ctx);
      assert.equal(signed.recipient, recipientAddr, ctx);
      assert.equal(signed.sender_key, sender.pub, ctx);
      assert.equal(signed.sender_encrypt_key, senderEnc.pub, ctx);
      assert.equal(signed.recipient_encrypt_key, recipient.pub, ctx);
      assert.equal(signed.created, created, ctx);
      assert.equal(signed.expires, created + ttl, ctx);
      assert.equal(signed.nonce, nonce, ctx);

      // fiojs side
      const packed = packEnvelope(signed);
      assert.equal(envelopeId(packed), signed.id, ctx);
      const digest = envelopeDigest(chainId, packed);
      const sig = Signature.fromString(signed.signature);
      assert.ok(sig, ctx);
      assert.equal(sig.verifyHash(digest, signed.sender_key), true, ctx);
      assert.equal(Signature.signHash(digest, sender.wif).toString(), signed.signature, ctx);
      const plain = withCtx(ctx, () => Fio.createSharedCipher({ privateKey: recipient.wif, publicKey: signed.sender_encrypt_key }).decrypt(type, signed.content));
      assert.deepEqual(plain, full, ctx);
      if (iv) {
        const jsContent = Fio.createSharedCipher({ privateKey: senderEnc.wif, publicKey: recipient.pub }).encrypt(type, full, iv);
        assert.equal(signed.content, jsContent, ctx);
      }
      // and Rust verifies its own output with the same id and pow_bits the JS side computes
      const v = rustJson(["message", "verify", "--chain-id", chainId, "--now", String(created)], { input: JSON.stringify(signed), ctx });
      assert.deepEqual(v, { id: envelopeId(packed), pow_bits: leadingZeroBits(sha256(packed)), sender: senderAddr, recipient: recipientAddr }, ctx);
    }
  });
});
