import { describe, it, expect } from 'vitest'
import { createHash } from 'node:crypto'
import { deriveContentKeys } from '../../src/cas/keys.ts'
import { CHUNK_ID_BYTES, SEAL_OVERHEAD, chunkId, fromHex, open, seal, toHex } from '../../src/cas/seal.ts'
import { isBazilError } from '../../src/errors.ts'

function errorCode (fn: () => unknown): string {
  try { fn() } catch (err) { return isBazilError(err) ? err.code : `not a BazilError: ${String(err)}` }
  return 'no error'
}

/** Deterministic bytes (xorshift32), so failures reproduce. */
function pseudoRandom (length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  let x = seed | 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    out[i] = x & 255
  }
  return out
}

function contains (haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.length).indexOf(needle) >= 0
}

const secret = Uint8Array.from({ length: 32 }, (_, i) => i)
const keys = deriveContentKeys(secret)
const otherKeys = deriveContentKeys(Uint8Array.from({ length: 32 }, (_, i) => 255 - i))
const text = new TextEncoder().encode('Bazil golden vector: one chunk of plaintext.\n')

describe('seal / open', () => {
  it('round-trips plaintexts of many sizes; sealed size is plain + SEAL_OVERHEAD', () => {
    expect(SEAL_OVERHEAD).toBe(17)
    for (const size of [0, 1, 15, 16, 17, 4095, 4096, 65537, (1 << 20) + 3]) {
      const plain = pseudoRandom(size, size + 1)
      const id = chunkId(keys, plain)
      expect(id.length).toBe(CHUNK_ID_BYTES)
      const sealed = seal(keys, id, plain)
      expect(sealed.length).toBe(size + SEAL_OVERHEAD)
      expect(sealed[0]).toBe(1)
      const opened = open(keys, id, sealed)
      expect(opened.length).toBe(size)
      expect(Buffer.compare(opened, plain)).toBe(0)
    }
  })

  it('matches the golden vector (cross-checked with Python hmac + cryptography AESGCM)', () => {
    const id = chunkId(keys, text)
    expect(toHex(id)).toBe('4c9dc35ad465ca89d24e6ca65caed149e43861dcf90f7c353c1f2bff31c5b040')
    expect(toHex(seal(keys, id, text))).toBe(
      '017ccae987ebd733dff0dce4837d35c7b1aebb32ea95454a2768ab04140087c0' +
      '31efcb4244336fbcba7187a20d47df6d81c7822007f06f0bdef58c75cb38')
  })

  it('throws CORRUPT for every kind of tampering', () => {
    const plain = pseudoRandom(1000, 7)
    const id = chunkId(keys, plain)
    const sealed = seal(keys, id, plain)
    const tampered = (edit: (b: Uint8Array) => Uint8Array): string => errorCode(() => open(keys, id, edit(sealed.slice())))
    const flip = (at: number) => (b: Uint8Array) => { b[at]! ^= 0x01; return b }
    expect(tampered(b => b)).toBe('no error') // the baseline opens
    expect(tampered(b => { b[0] = 0x02; return b })).toBe('CORRUPT') // version
    expect(tampered(b => { b[0] = 0x00; return b })).toBe('CORRUPT')
    for (const at of [1, 500, sealed.length - 17]) expect(tampered(flip(at))).toBe('CORRUPT') // ciphertext
    for (const at of [sealed.length - 16, sealed.length - 1]) expect(tampered(flip(at))).toBe('CORRUPT') // tag
    for (const keep of [0, 1, 16, 17, sealed.length - 1]) {
      expect(tampered(b => b.subarray(0, keep))).toBe('CORRUPT') // truncated
    }
    expect(tampered(b => b.subarray(1))).toBe('CORRUPT') // header dropped
    expect(tampered(b => { const c = new Uint8Array(b.length + 1); c.set(b); return c })).toBe('CORRUPT') // appended
  })

  it('a different owner secret cannot open (CORRUPT)', () => {
    const id = chunkId(keys, text)
    expect(errorCode(() => open(otherKeys, id, seal(keys, id, text)))).toBe('CORRUPT')
  })

  it('an object sealed for id A presented as id B is CORRUPT', () => {
    const idA = chunkId(keys, text)
    const sealedA = seal(keys, idA, text)
    const idB = chunkId(keys, pseudoRandom(100, 3))
    expect(errorCode(() => open(keys, idB, sealedA))).toBe('CORRUPT')
    const nearA = idA.slice(); nearA[31]! ^= 0x80
    expect(errorCode(() => open(keys, nearA, sealedA))).toBe('CORRUPT')
  })

  it('re-hashes on open: bytes sealed under a wrong id are CORRUPT even though the tag verifies', () => {
    const idA = chunkId(keys, text)
    const wrong = seal(keys, idA, pseudoRandom(100, 9)) // a buggy writer breaking seal's precondition
    expect(errorCode(() => open(keys, idA, wrong))).toBe('CORRUPT')
  })

  it('converges: same plaintext + same secret gives the same id and sealed bytes', () => {
    const plain = pseudoRandom(70_000, 11)
    const again = deriveContentKeys(secret.slice())
    const id1 = chunkId(keys, plain)
    const id2 = chunkId(again, plain.slice())
    expect(toHex(id2)).toBe(toHex(id1))
    expect(toHex(seal(again, id2, plain.slice()))).toBe(toHex(seal(keys, id1, plain)))
  })

  it('different secrets give different ids and different sealed bytes', () => {
    const idMine = chunkId(keys, text)
    const idOther = chunkId(otherKeys, text)
    expect(toHex(idOther)).not.toBe(toHex(idMine))
    expect(toHex(seal(otherKeys, idOther, text))).not.toBe(toHex(seal(keys, idMine, text)))
  })

  it('stored bytes reveal neither the plaintext nor its unkeyed hash', () => {
    const samples = [pseudoRandom(65536, 5), new Uint8Array(65536).fill(0x41), text]
    for (const plain of samples) {
      const id = chunkId(keys, plain)
      const sealed = seal(keys, id, plain)
      const sha = createHash('sha256').update(plain).digest()
      expect(toHex(id)).not.toBe(sha.toString('hex'))
      expect(contains(sealed, sha)).toBe(false)
      expect(contains(sealed, id)).toBe(false)
      for (let at = 0; at + 16 <= plain.length; at += Math.max(16, plain.length >>> 4)) {
        expect(contains(sealed, plain.subarray(at, at + 16))).toBe(false)
      }
    }
  })

  it('rejects ids that are not 32 bytes with INVALID', () => {
    const sealed = seal(keys, chunkId(keys, text), text)
    for (const bad of [new Uint8Array(0), new Uint8Array(31), new Uint8Array(33)]) {
      expect(errorCode(() => seal(keys, bad, text))).toBe('INVALID')
      expect(errorCode(() => open(keys, bad, sealed))).toBe('INVALID')
    }
  })

  it('returns plain Uint8Arrays that own their memory', () => {
    const id = chunkId(keys, text)
    const sealed = seal(keys, id, text)
    const opened = open(keys, id, sealed)
    for (const b of [id, sealed, opened]) {
      expect(Buffer.isBuffer(b)).toBe(false)
      expect(b.byteOffset).toBe(0)
      expect(b.buffer.byteLength).toBe(b.length)
    }
  })
})

describe('toHex / fromHex', () => {
  it('round-trips and accepts either case', () => {
    const bytes = pseudoRandom(33, 2)
    expect(toHex(fromHex(toHex(bytes)))).toBe(toHex(bytes))
    expect(toHex(fromHex('00ABff'))).toBe('00abff')
    expect(fromHex('').length).toBe(0)
    expect(toHex(bytes.subarray(1, 3))).toBe(toHex(Uint8Array.of(bytes[1]!, bytes[2]!)))
    const parsed = fromHex('0102')
    expect(parsed.buffer.byteLength).toBe(2) // not a view into Node's shared pool
  })

  it('rejects malformed hex with INVALID', () => {
    for (const bad of ['0', 'zz', '0x00', 'ab cd', 'abc']) expect(errorCode(() => fromHex(bad))).toBe('INVALID')
  })
})
