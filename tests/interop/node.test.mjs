// Interop: a wallet that has only fiojs talks to a real fio-l2 node (--dev):
// it submits a fiojs-signed envelope, builds the owner proof of docs/api.md
// with fiojs, reads and decrypts its inbox, and acknowledges. Run through ./run.sh.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import * as h from "./helpers.mjs";

const { BIN, Fio, keyPair, PrivateKey, Signature, sha256, signEnvelopeJs } = h;

let node, url, chainId, nodeId, dataDir;

before(async () => {
  h.banner("node.test.mjs");
  assert.ok(BIN, "FIO_L2_BIN must name the fio-l2 binary");
  dataDir = mkdtempSync(join(tmpdir(), "fio-l2-interop-"));
  node = spawn(BIN, ["node", "--dev", "--listen", "127.0.0.1:0", "--data", dataDir, "--log", "error"], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: node.stdout });
    rl.once("line", resolve);
    node.once("exit", (code) => reject(new Error(`node exited early (${code})`)));
  });
  const ready = JSON.parse(line);
  ({ url, chain_id: chainId, node_id: nodeId } = ready);
});

after(() => {
  if (node) node.kill("SIGKILL");
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function call(method, path, { body, headers = {} } = {}) {
  const r = await fetch(url + path, { method, body, headers: { "content-type": "application/json", ...headers } });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

/** The owner proof of docs/api.md, made with fiojs only. */
function ownerProof(wif, address, method, pathAndQuery, body = "") {
  const time = String(Math.floor(Date.now() / 1000));
  const nonce = randomBytes(16).toString("hex");
  const text = ["FIO-L2-AUTH", chainId, nodeId, address, method, pathAndQuery, time, nonce, sha256(Buffer.from(body)).toString("hex")].join("\n");
  const signature = Signature.signHash(sha256(Buffer.from(text, "utf8")), wif).toString();
  return {
    "x-fio-l2-address": address,
    "x-fio-l2-key": PrivateKey.fromString(wif).toPublic().toString(),
    "x-fio-l2-node": nodeId,
    "x-fio-l2-time": time,
    "x-fio-l2-nonce": nonce,
    "x-fio-l2-signature": signature,
  };
}

describe("5. a fiojs wallet against a real node", () => {
  test("submit, read with a fiojs owner proof, decrypt, replay refused, ack", async () => {
    const alice = keyPair(PrivateKey.fromSeed(`interop-node-alice-${h.SEED}`));
    const bob = keyPair(PrivateKey.fromSeed(`interop-node-bob-${h.SEED}`));
    for (const [address, p] of [["alice@dev", alice], ["bob@dev", bob]]) {
      const r = await call("POST", "/v1/dev/register_address", { body: JSON.stringify({ address, owner_public_key: p.pub }) });
      assert.equal(r.status, 200, JSON.stringify(r.json));
    }
    const content = { payee_public_address: "bc1qinterop", amount: "0.5", chain_code: "BTC", token_code: "BTC", memo: "from fiojs", hash: null, offline_url: null };
    const cipher = Fio.createSharedCipher({ privateKey: alice.wif, publicKey: bob.pub });
    const created = Math.floor(Date.now() / 1000);
    const env = {
      version: 1, content_type: "new_funds_content", sender: "alice@dev", recipient: "bob@dev",
      sender_key: alice.pub, sender_encrypt_key: alice.pub, recipient_encrypt_key: bob.pub,
      created, expires: created + 3600, nonce: 0, content: cipher.encrypt("new_funds_content", content),
    };
    const signed = signEnvelopeJs(env, chainId, alice.wif);
    let r = await call("POST", "/v1/messages", { body: JSON.stringify(signed.json) });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.id, signed.id, "the node's id is fiojs's sha256(packed)");
    r = await call("POST", "/v1/messages", { body: JSON.stringify(signed.json) });
    assert.deepEqual([r.status, r.json.status], [200, "existing"]);

    const path = "/v1/inbox/bob@dev?order=newest&limit=10";
    const headers = ownerProof(bob.wif, "bob@dev", "GET", path);
    r = await call("GET", path, { headers });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.messages.length, 1);
    const got = r.json.messages[0].envelope;
    assert.equal(got.id, signed.id);
    assert.equal(Signature.fromString(got.signature).verifyHash(signed.digest, alice.pub), true);
    const plain = Fio.createSharedCipher({ privateKey: bob.wif, publicKey: got.sender_encrypt_key }).decrypt(got.content_type, got.content);
    assert.equal(plain.amount, "0.5");
    assert.equal(plain.memo, "from fiojs");

    // The same proof again is a replay.
    r = await call("GET", path, { headers });
    assert.deepEqual([r.status, r.json.error.code], [401, "proof_replayed"]);
    // alice's key does not own bob@dev.
    r = await call("GET", path, { headers: ownerProof(alice.wif, "bob@dev", "GET", path) });
    assert.deepEqual([r.status, r.json.error.code], [403, "not_owner"]);

    const body = JSON.stringify({ ids: [signed.id] });
    r = await call("POST", "/v1/inbox/bob@dev/ack", { body, headers: ownerProof(bob.wif, "bob@dev", "POST", "/v1/inbox/bob@dev/ack", body) });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.deepEqual(r.json.deleted, [signed.id]);
    r = await call("POST", "/v1/messages", { body: JSON.stringify(signed.json) });
    assert.deepEqual([r.status, r.json.error.code], [410, "message_deleted"]);
  });
});
