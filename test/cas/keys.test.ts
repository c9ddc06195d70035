import { describe, it, expect } from 'vitest'
import { deriveContentKeys } from '../../src/cas/keys.ts'
import { toHex } from '../../src/cas/seal.ts'
import { isBazilError } from '../../src/errors.ts'

function errorCode (fn: () => unknown): string {
  try { fn() } catch (err) { return isBazilError(err) ? err.code : `not a BazilError: ${String(err)}` }
  return 'no error'
}

const secret = Uint8Array.from({ length: 32 }, (_, i) => i)

describe('deriveContentKeys', () => {
  it('matches the known answer (HKDF-SHA256, zero salt; cross-checked with Python hmac)', () => {
    const keys = deriveContentKeys(secret)
    expect(toHex(keys.idKey)).toBe('06826fc33a4e5c1ad964598b3057e548c044545c84e9d634921d30846fe174e2')
    expect(toHex(keys.encKey)).toBe('5b896fbb8ded351bee5319e178d4688d8945944ef06dc543cf382c042eabc658')
  })

  it('is deterministic, separates purposes and owners', () => {
    const a = deriveContentKeys(secret)
    const b = deriveContentKeys(secret.slice())
    expect(toHex(a.idKey)).toBe(toHex(b.idKey))
    expect(toHex(a.idKey)).not.toBe(toHex(a.encKey))
    const other = secret.slice(); other[31]! ^= 1
    const c = deriveContentKeys(other)
    expect(toHex(c.idKey)).not.toBe(toHex(a.idKey))
    expect(toHex(c.encKey)).not.toBe(toHex(a.encKey))
    expect(a.idKey.length).toBe(32)
    expect(a.encKey.length).toBe(32)
  })

  it('rejects a secret that is not 32 bytes with INVALID', () => {
    for (const length of [0, 16, 31, 33, 64]) {
      expect(errorCode(() => deriveContentKeys(new Uint8Array(length)))).toBe('INVALID')
    }
    expect(errorCode(() => deriveContentKeys('x'.repeat(32) as unknown as Uint8Array))).toBe('INVALID')
  })
})
