// Shared helpers of the interop tests (fio-l2 Rust CLI vs @fioprotocol/fiojs@1.0.2).
//
// Randomness: every random input comes from a PRNG seeded by INTEROP_SEED (run.sh
// picks and prints one when unset; each test file prints the seed it uses), one
// independent stream per test, so a failing test can be rerun alone with the same
// seed (`--test-name-pattern`). INTEROP_N sets the random iterations per case
// (default 25; the random-signature case runs at least 60).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { createHash, createECDH, randomBytes as osRandomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(import.meta.url);
export const { Ecc, Fio, Serialize, Numeric } = require("@fioprotocol/fiojs");
export const FIOJS_VERSION = require("@fioprotocol/fiojs/package.json").version;
// fiojs internals, only to tell whether a signature needed the canonical retry.
const fiojsRequire = createRequire(require.resolve("@fioprotocol/fiojs"));
export const ecdsa = fiojsRequire("./ecc/ecdsa.js");
export const curve = fiojsRequire("ecurve").getCurveByName("secp256k1");

export const { PrivateKey, PublicKey, Signature } = Ecc;

// ---------------------------------------------------------------------------
// The Rust binary: required, never skipped.
export const BIN = process.env.FIO_L2_BIN;
if (!BIN) {
  throw new Error("FIO_L2_BIN is not set: point it at the fio-l2 binary (e.g. target/debug/fio-l2); see run.sh");
}
if (!path.isAbsolute(BIN) || !fs.existsSync(BIN)) {
  throw new Error(`FIO_L2_BIN=${BIN} is not an absolute path to an existing file; build it with \`cargo build -p fio-l2\``);
}
fs.accessSync(BIN, fs.constants.X_OK);

const BASE_ENV = { ...process.env };
delete BASE_ENV.FIO_L2_PRIVATE_KEY;

/** Run the CLI; returns {status, stdout, stderr}. */
export function rustRun(args, { key, input } = {}) {
  const env = { ...BASE_ENV };
  if (key) env.FIO_L2_PRIVATE_KEY = key;
  const r = spawnSync(BIN, args, { env, input: input ?? "", encoding: "utf8", maxBuffer: 16 << 20 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
/** Run the CLI, require exit 0 (`ctx` goes into the failure message), return trimmed stdout. */
export function rustOk(args, opts = {}) {
  const r = rustRun(args, opts);
  assert.equal(
    r.status, 0,
    `${opts.ctx ? opts.ctx + "\n" : ""}fio-l2 ${JSON.stringify(args)} exited ${r.status}\nstdin: ${opts.input ?? ""}\nstderr: ${r.stderr}`,
  );
  return r.stdout.trim();
}
export const rustJson = (args, opts) => JSON.parse(rustOk(args, opts));

// ---------------------------------------------------------------------------
// Seeded randomness.
export const SEED = process.env.INTEROP_SEED ? process.env.INTEROP_SEED.trim() : osRandomBytes(8).toString("hex");
export const N = Number(process.env.INTEROP_N || 25);
export const N_SIG = Number(process.env.INTEROP_N_SIG || Math.max(60, N));

/** Print the seed, binary and versions once per test file (shows as `# ...` in TAP). */
export function banner(file) {
  const v = rustRun(["--version"]);
  assert.equal(v.status, 0, `cannot run ${BIN}: ${v.stderr}`);
  console.log(`${file}: interop seed ${SEED} (rerun with INTEROP_SEED=${SEED}); iterations ${N}, signatures ${N_SIG}`);
  console.log(`${file}: ${BIN} = ${v.stdout.trim()}; @fioprotocol/fiojs ${FIOJS_VERSION}`);
}

/** A byte stream: SHA-256 in counter mode over (seed, stream name). */
export class Rng {
  constructor(stream) {
    this.key = createHash("sha256").update(`fio-l2 interop|${SEED}|${stream}`).digest();
    this.counter = 0;
    this.pool = Buffer.alloc(0);
  }
  bytes(n) {
    while (this.pool.length < n) {
      const c = Buffer.alloc(8);
      c.writeBigUInt64BE(BigInt(this.counter++));
      this.pool = Buffer.concat([this.pool, createHash("sha256").update(this.key).update(c).digest()]);
    }
    const out = this.pool.subarray(0, n);
    this.pool = this.pool.subarray(n);
    return Buffer.from(out);
  }
  u32() { return this.bytes(4).readUInt32BE(0); }
  /** integer in [lo, hi] */
  int(lo, hi) { return lo + Math.floor((this.u32() / 2 ** 32) * (hi - lo + 1)); }
  bool(p = 0.5) { return this.u32() / 2 ** 32 < p; }
  pick(arr) { return arr[this.int(0, arr.length - 1)]; }
  /** uniform in [0, 2^53 - 1] */
  u53() { return this.int(0, 2 ** 21 - 1) * 2 ** 32 + this.u32(); }
}

export const N_ORDER = BigInt("0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141");
export const bigOf = (buf) => BigInt("0x" + (Buffer.from(buf).toString("hex") || "0"));
export const buf32 = (big) => Buffer.from(big.toString(16).padStart(64, "0"), "hex");

/** A fiojs private key from seeded entropy (1 <= d < n). */
export function randomPrivateKey(rng) {
  for (;;) {
    const b = rng.bytes(32);
    const d = bigOf(b);
    if (d > 0n && d < N_ORDER) return PrivateKey.fromBuffer(b);
  }
}
/** The same signature with s replaced by n - s (and the recovery id flipped): valid, but high S. */
export function highSCopy(sigString) {
  const sig = Signature.fromString(sigString).toBuffer();
  const s = bigOf(sig.subarray(33));
  return Signature.fromBuffer(Buffer.concat([Buffer.from([31 + ((sig[0] - 31) ^ 1)]), sig.subarray(1, 33), buf32(N_ORDER - s)])).toString();
}
export const keyPair = (pk) => ({ wif: pk.toWif(), pub: pk.toPublic().toString(), pk });

export const CHAR_POOLS = [
  [0x20, 0x7e], [0x20, 0x7e], [0x20, 0x7e], // ASCII printable (weighted)
  [0x00, 0x1f], // control characters incl. NUL, \n, \t
  [0xa0, 0x24f], // Latin-1 + Latin extended
  [0x300, 0x36f], // combining marks
  [0x370, 0x4ff], // Greek, Cyrillic
  [0x5d0, 0x6ff], // Hebrew, Arabic (RTL)
  [0x2000, 0x206f], // punctuation incl. U+2028/2029, zero-width chars
  [0x4e00, 0x9fff], // CJK
  [0xe000, 0xffff], // private use .. U+FFFF (no surrogates)
  [0x1f300, 0x1faff], // emoji (4-byte UTF-8)
  [0x10000, 0x10ffff], // any astral plane code point
];
/** A random string of whole code points (never lone surrogates). */
export function randomString(rng, maxLen = 24) {
  const r = rng.int(0, 99);
  const len = r < 8 ? 0 : r < 85 ? rng.int(1, maxLen) : rng.int(100, 260); // long ones cross the 127-byte varuint boundary
  const pools = rng.bool(0.3) ? [CHAR_POOLS[0]] : CHAR_POOLS;
  let s = "";
  for (let i = 0; i < len; i++) {
    const [lo, hi] = rng.pick(pools);
    let cp = rng.int(lo, hi);
    // fiojs decodes each string with TextDecoder, which drops a leading
    // U+FEFF (BOM); cipher.test.mjs checks that quirk on its own.
    if (i === 0 && cp === 0xfeff) cp = 0xfefe;
    s += String.fromCodePoint(cp);
  }
  return s;
}

export const CONTENT_FIELDS = {
  new_funds_content: {
    required: ["payee_public_address", "amount", "chain_code", "token_code"],
    optional: ["memo", "hash", "offline_url"],
  },
  record_obt_data_content: {
    required: ["payer_public_address", "payee_public_address", "amount", "chain_code", "token_code", "status", "obt_id"],
    optional: ["memo", "hash", "offline_url"],
  },
};
export const OBT_STATUSES = ["requested", "rejected", "sent_to_blockchain", "cancelled"];

/**
 * Random content of `type`. Returns {full, sparse}: `full` has every field (null for
 * absent optionals: the form fiojs needs and returns), `sparse` omits some of the
 * absent optionals and keeps others as explicit null (both forms the Rust CLI takes).
 */
export function randomContent(rng, type) {
  const { required, optional } = CONTENT_FIELDS[type];
  const full = {};
  const sparse = {};
  for (const f of required) {
    let v = randomString(rng);
    if (f === "status") v = rng.pick(OBT_STATUSES);
    if (f === "amount" && rng.bool(0.5)) v = String(rng.int(0, 10 ** 6)) + (rng.bool() ? "." + rng.int(0, 999999) : "");
    full[f] = v;
    sparse[f] = v;
  }
  for (const f of optional) {
    const roll = rng.int(0, 3); // 0: absent (omitted), 1: absent (null), 2: "", 3: random
    const v = roll <= 1 ? null : roll === 2 ? "" : randomString(rng, 40);
    full[f] = v;
    if (roll !== 0) sparse[f] = v;
  }
  return { full, sparse };
}

/** x coordinate (32 bytes, zero padded) of d_A * Q_B, independently of fiojs. */
export function ecdhX(privateKey, publicKey) {
  const e = createECDH("secp256k1");
  e.setPrivateKey(PrivateKey(privateKey).toBuffer());
  return e.computeSecret(PublicKey(publicKey).toBuffer());
}

// ---------------------------------------------------------------------------
// l2_message ABI (protocol-v1.md), serialized with fiojs's Serialize module.
export const L2_ABI = {
  version: "eosio::abi/1.1",
  types: [],
  structs: [
    {
      name: "l2_message",
      base: "",
      fields: [
        { name: "version", type: "uint8" },
        { name: "content_type", type: "string" },
        { name: "sender", type: "string" },
        { name: "recipient", type: "string" },
        { name: "sender_key", type: "public_key" },
        { name: "sender_encrypt_key", type: "public_key" },
        { name: "recipient_encrypt_key", type: "public_key" },
        { name: "created", type: "uint32" },
        { name: "expires", type: "uint32" },
        { name: "nonce", type: "uint64" },
        { name: "content", type: "string" },
      ],
    },
  ],
  actions: [], tables: [], ricardian_clauses: [], error_messages: [], abi_extensions: [], variants: [],
};
export const ENVELOPE_FIELDS = L2_ABI.structs[0].fields.map((f) => f.name);
export const l2Types = Serialize.getTypesFromAbi(Serialize.createInitialTypes(), L2_ABI);

export function packEnvelope(env) {
  const buf = new Serialize.SerialBuffer();
  const fields = {};
  for (const f of ENVELOPE_FIELDS) fields[f] = env[f];
  l2Types.get("l2_message").serialize(buf, fields);
  return Buffer.from(buf.asUint8Array());
}
export const sha256 = (b) => createHash("sha256").update(b).digest();
export const envelopeId = (packed) => sha256(packed).toString("hex");
export function envelopeDigest(chainIdHex, packed) {
  return sha256(Buffer.concat([Buffer.from("FIO-L2", "ascii"), Buffer.from(chainIdHex, "hex"), packed]));
}
export function leadingZeroBits(buf) {
  let n = 0;
  for (const byte of buf) {
    if (byte === 0) { n += 8; continue; }
    return n + Math.clz32(byte) - 24;
  }
  return n;
}
/** The signed JSON form, fields in protocol order. */
export function signEnvelopeJs(env, chainIdHex, wif) {
  const packed = packEnvelope(env);
  const digest = envelopeDigest(chainIdHex, packed);
  const signature = Signature.signHash(digest, wif).toString();
  const json = {};
  for (const f of ENVELOPE_FIELDS) json[f] = env[f];
  json.signature = signature;
  return { json, packed, digest, id: envelopeId(packed), powBits: leadingZeroBits(sha256(packed)) };
}

export function randomLabel(rng, maxLen) {
  const alnum = "abcdefghijklmnopqrstuvwxyz0123456789";
  const len = rng.int(1, maxLen);
  let s = "";
  for (let i = 0; i < len; i++) {
    const hyphenOk = i > 0 && i < len - 1 && s[s.length - 1] !== "-";
    s += hyphenOk && rng.bool(0.15) ? "-" : alnum[rng.int(0, alnum.length - 1)];
  }
  return s;
}
export const randomAddress = (rng) => `${randomLabel(rng, 14)}@${randomLabel(rng, 14)}`;

export function isCanonical(sig65) {
  const c = sig65;
  return !(c[1] & 0x80) && !(c[1] === 0 && !(c[2] & 0x80)) && !(c[33] & 0x80) && !(c[33] === 0 && !(c[34] & 0x80));
}
/** Whether fiojs's first RFC 6979 attempt is already canonical (else signHash retries). */
export function firstAttemptCanonical(digest, pk) {
  const der = ecdsa.sign(curve, digest, pk.d, 0).toDER();
  return der[3] === 32 && der[5 + der[3]] === 32;
}
/** How many extra attempts fiojs's signHash needs for this digest (0 = first RFC 6979 k is canonical). */
export function fiojsRetries(digest, pk) {
  for (let nonce = 0; ; nonce++) {
    const der = ecdsa.sign(curve, digest, pk.d, nonce).toDER();
    const lenR = der[3];
    const lenS = der[5 + lenR];
    if (lenR === 32 && lenS === 32) return nonce;
  }
}

// Fixed vectors (fio-standards.md, protocol-v1.md).
export const SEED_KEYS = {
  "": { wif: "5KYZdUEo39z3FPrtuX2QbbwGnNP5zTd7yyr2SC1j299sBCnWjss", pub: "FIO859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2HqhToVM", actor: "3ftmgtgiqmn2" },
  alice: { wif: "5J9bWm2ThenDm3tjvmUgHtWCVMUdjRR1pxnRtnJjvKA4b2ut5WK", pub: "FIO7zsqi7QUAjTAdyynd6DVe8uv4K8gCTRHnAoMN9w9CA1xLCTDVv" },
  bob: { wif: "5JoQtsKQuH8hC9MyvfJAqo6qmKLm8ePYNucs7tPu2YxG12trzBt", pub: "FIO5VE6Dgy9FUmd1mFotXwF88HkQN1KysCWLPqpVnDMjRvGRi1YrM" },
};
export const VECTOR_IV = "f300888ca4f512cebdc0020ff0f7224c";
export const VECTOR_CONTENT = { payee_public_address: "purse.alice", amount: "1", chain_code: "FIO", token_code: "FIO" };
export const VECTOR_CONTENT_FULL = { ...VECTOR_CONTENT, memo: null, hash: null, offline_url: null };
export const VECTOR_CIPHER = "8wCIjKT1Es69wAIP8PciTOB8F09qqDGdsq0XriIWcOkqpZe9q4FwKu3SGILtnAWtJGETbcAqd3zX7NDptPUQsS1ZfEPiK6Hv0nJyNbxwiQc=";
export const VECTOR_CHAIN_ID = "21dcae42c0182200e93f954a074011f9048a7624c6fe81d3c9541a614a88bd1c";
export const VECTOR_ENVELOPE = {
  version: 1, content_type: "new_funds_content", sender: "alice@wallet", recipient: "bob@wallet",
  sender_key: SEED_KEYS.alice.pub, sender_encrypt_key: SEED_KEYS.alice.pub, recipient_encrypt_key: SEED_KEYS.bob.pub,
  created: 1795000000, expires: 1797592000, nonce: 0, content: VECTOR_CIPHER,
  signature: "SIG_K1_KXLNUGXE1Lp3syBWBbBCgVoXhxFi8ib7p5Eox5YxW1RgLk1mxLTEc3ZfF5vacrpkXDK3vvQNmtKU6mK2FowtqZuG5uEeGr",
};
export const VECTOR_ID = "083a6cef87797954a9eabb125a4e31da725616e9c24e5b186b7106d902257574";
export const VECTOR_PACKED =
  "01116e65775f66756e64735f636f6e74656e740c616c6963654077616c6c65740a626f624077616c6c657400039997a497d964fc1a62885b05a51166a65a90df00492c8d7cf61d6accf54803be00039997a497d964fc1a62885b05a51166a65a90df00492c8d7cf61d6accf54803be00024edfcf9dfe6c0b5c83d1ab3f78d1b39a46ebac6798e08e19761f5ed89ec83c10c086fd6ac013256b00000000000000006c387743496a4b5431457336397741495038506369544f423846303971714447647371305872694957634f6b71705a6539713446774b75335347494c746e4157744a4745546263417164337a58374e4470745055517353315a664550694b364876306e4a794e6278776951633d";

/** A random envelope built and signed entirely with fiojs. */
export function jsEnvelope(rng, { grind = 0 } = {}) {
  const sender = keyPair(randomPrivateKey(rng));
  const senderEnc = rng.bool(0.3) ? keyPair(randomPrivateKey(rng)) : sender;
  const recipient = keyPair(randomPrivateKey(rng));
  const type = rng.pick(Object.keys(CONTENT_FIELDS));
  const { full } = randomContent(rng, type);
  const cipher = Fio.createSharedCipher({ privateKey: senderEnc.wif, publicKey: recipient.pub });
  const created = rng.int(1_600_000_000, 2 ** 32 - 1 - 2_592_000);
  const env = {
    version: 1,
    content_type: type,
    sender: randomAddress(rng),
    recipient: randomAddress(rng),
    sender_key: sender.pub,
    sender_encrypt_key: senderEnc.pub,
    recipient_encrypt_key: recipient.pub,
    created,
    expires: created + rng.int(1, 2_592_000),
    nonce: rng.pick([0, 1, rng.u53(), 2 ** 53 - 1, rng.int(0, 2 ** 32)]),
    content: cipher.encrypt(type, full),
  };
  if (grind) { // proof of work, fiojs side
    env.nonce = 0;
    while (leadingZeroBits(sha256(packEnvelope(env))) < grind) env.nonce++;
  }
  const chainId = rng.bytes(32).toString("hex");
  return { env, chainId, sender, senderEnc, recipient, full, type, ...signEnvelopeJs(env, chainId, sender.wif) };
}

/** Run `fn`; if it throws (fiojs errors say only e.g. "decrypt failed"), fail with `ctx` added. */
export function withCtx(ctx, fn) {
  try {
    return fn();
  } catch (e) {
    assert.fail(`${ctx}\n${e && e.stack ? e.stack : e}`);
  }
}
