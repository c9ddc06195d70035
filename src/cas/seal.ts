/**
 * Sealing chunks: the convergent, keyed format every store sees. Hot path, so node:crypto only.
 *
 *   id     = HMAC-SHA256(idKey, plain)                      (32 bytes; the store key)
 *   key    = HMAC-SHA256(encKey, id)                        (one AES-256 key per distinct plaintext)
 *   sealed = [0x01] || AES-256-GCM(key, nonce = 12 zero bytes, AAD = 0x01 || id, plain) || tag(16)
 *
 * Why a fixed nonce is safe: a key is a function of the id, and the id of the plaintext, so a key
 * only ever encrypts one plaintext; sealing it again yields the same bytes (that is the dedup).
 * GCM breaks only when one key and nonce encrypt two *different* messages, which would need an
 * HMAC-SHA256 collision. The one precondition is that callers pass `id = chunkId(keys, plain)`;
 * `open` re-checks it on every read. See docs/DECISIONS.md "Hot-path crypto uses node:crypto".
 *
 * Every Uint8Array returned here is a plain Uint8Array (not a Buffer) that owns its whole
 * ArrayBuffer (byteOffset 0, never a slice of Node's shared pool), so it can be transferred to or
 * from a worker thread.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto'
import { BazilError, ErrorCode } from '../errors.ts'
import type { ContentKeys } from './keys.ts'

export const CHUNK_ID_BYTES = 32
export const SEAL_VERSION = 0x01
const TAG_BYTES = 16
/** Version byte + GCM tag. */
export const SEAL_OVERHEAD: number = 1 + TAG_BYTES
const ZERO_NONCE = new Uint8Array(12)

/** Keyed hash of the plaintext: HMAC-SHA256(idKey, plain). */
export function chunkId (keys: ContentKeys, plain: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', keys.idKey).update(plain).digest())
}

/** Encrypts `plain`, whose id must be `chunkId(keys, plain)`. Output: [0x01][ciphertext][16-byte tag]. */
export function seal (keys: ContentKeys, id: Uint8Array, plain: Uint8Array): Uint8Array {
  checkId(id)
  const cipher = createCipheriv('aes-256-gcm', chunkKey(keys, id), ZERO_NONCE, { authTagLength: TAG_BYTES })
  cipher.setAAD(aad(id))
  const body = cipher.update(plain)
  const rest = cipher.final() // empty for GCM, kept for correctness
  const tag = cipher.getAuthTag()
  // Own, unpooled memory, every byte written below: no zero-fill, no second copy.
  const out = Buffer.allocUnsafeSlow(1 + body.length + rest.length + TAG_BYTES)
  out[0] = SEAL_VERSION
  out.set(body, 1)
  out.set(rest, 1 + body.length)
  out.set(tag, 1 + body.length + rest.length)
  return asUint8Array(out)
}

/** Decrypts and verifies: wrong version, truncated input, failed tag, or HMAC of the plaintext != id
 *  all throw BazilError CORRUPT. Never returns wrong bytes. */
export function open (keys: ContentKeys, id: Uint8Array, sealed: Uint8Array): Uint8Array {
  checkId(id)
  if (sealed.length < SEAL_OVERHEAD) throw corrupt(id, `truncated: ${sealed.length} bytes`)
  if (sealed[0] !== SEAL_VERSION) throw corrupt(id, `unknown seal version ${sealed[0] ?? '?'}`)
  const tagStart = sealed.length - TAG_BYTES
  const decipher = createDecipheriv('aes-256-gcm', chunkKey(keys, id), ZERO_NONCE, { authTagLength: TAG_BYTES })
  decipher.setAAD(aad(id))
  decipher.setAuthTag(sealed.subarray(tagStart))
  let plain: Buffer
  try {
    const body = decipher.update(sealed.subarray(1, tagStart))
    const rest = decipher.final() // throws when the tag does not verify
    plain = rest.length === 0 ? body : Buffer.concat([body, rest])
  } catch (err) {
    throw corrupt(id, 'authentication failed', err)
  }
  // Only a holder of the secret can produce a valid tag, but a buggy or wrong-keyed writer could
  // still have sealed other bytes under this id: re-hash so a reader never sees them.
  const actual = createHmac('sha256', keys.idKey).update(plain).digest()
  if (!timingSafeEqual(actual, id)) throw corrupt(id, 'plaintext does not match its id')
  return asUint8Array(plain)
}

export function toHex (b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex')
}

/** Parses even-length hex (either case); anything else is INVALID. */
export function fromHex (s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new BazilError(ErrorCode.INVALID, 'not a hex string')
  }
  return asUint8Array(Buffer.from(s, 'hex'))
}

function chunkKey (keys: ContentKeys, id: Uint8Array): Buffer {
  return createHmac('sha256', keys.encKey).update(id).digest()
}

function aad (id: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + id.length)
  out[0] = SEAL_VERSION
  out.set(id, 1)
  return out
}

function checkId (id: Uint8Array): void {
  if (id.length !== CHUNK_ID_BYTES) {
    throw new BazilError(ErrorCode.INVALID, `chunk id must be ${CHUNK_ID_BYTES} bytes, got ${id.length}`)
  }
}

function corrupt (id: Uint8Array, why: string, cause?: unknown): BazilError {
  return new BazilError(ErrorCode.CORRUPT, `chunk ${toHex(id)}: ${why}`, { cause })
}

/** A plain Uint8Array (standard `slice` semantics) that owns its whole ArrayBuffer: a view when the
 *  Buffer already does, a copy when it is a slice of Node's shared pool (small buffers only). */
function asUint8Array (b: Buffer): Uint8Array {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length) return new Uint8Array(b.buffer, 0, b.length)
  return new Uint8Array(b)
}
