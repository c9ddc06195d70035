/**
 * The CAS read path under cancellation: readers of one chunk share one fetch, each waits under
 * its own signal, a reader that gives up never fails another's read, and the fetch itself is
 * aborted (down to the store) once no reader waits for it.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { Cas } from '../../src/cas/cas.ts'
import { deriveContentKeys } from '../../src/cas/keys.ts'
import { ErrorCode, isBazilError } from '../../src/errors.ts'
import { GatedStore } from '../helpers/gated-store.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import { Sealer } from '../../src/cas/sealer.ts'

async function codeOf (promise: Promise<unknown>): Promise<string> {
  try {
    await promise
    return 'resolved'
  } catch (err) {
    return isBazilError(err) ? err.code : String(err)
  }
}

async function setup (): Promise<{ store: GatedStore, cas: Cas, id: Uint8Array, plain: Uint8Array }> {
  const store = new GatedStore()
  const cas = new Cas(store, deriveContentKeys(randomBytes(32)))
  const plain = randomBytes(4096)
  const id = await cas.put(plain)
  store.holding = true
  return { store, cas, id, plain }
}

describe('Cas.get under cancellation', () => {
  it('a reader that aborts leaves the shared fetch to the others', async () => {
    const { store, cas, id, plain } = await setup()
    const quitter = new AbortController()
    const first = codeOf(cas.get(id, { signal: quitter.signal }))
    const second = cas.get(id)
    expect(store.gets).toBe(1)
    quitter.abort()
    expect(await first).toBe(ErrorCode.ABORTED)
    store.release()
    expect(Buffer.from(await second).equals(plain)).toBe(true)
    expect(store.aborted).toBe(0)
  })

  it('the fetch is aborted at the store once every reader gave up, and the next read fetches again', async () => {
    const { store, cas, id, plain } = await setup()
    const a = new AbortController()
    const b = new AbortController()
    const first = codeOf(cas.get(id, { signal: a.signal }))
    const second = codeOf(cas.get(id, { signal: b.signal }))
    a.abort()
    expect(store.aborted).toBe(0)
    b.abort()
    expect([await first, await second]).toEqual([ErrorCode.ABORTED, ErrorCode.ABORTED])
    expect(store.aborted).toBe(1)
    store.release()
    expect(Buffer.from(await cas.get(id)).equals(plain)).toBe(true)
    expect(store.gets).toBe(2)
  })

  it('a signal that fired already fails the read before the store is asked', async () => {
    const { store, cas, id } = await setup()
    expect(await codeOf(cas.get(id, { signal: AbortSignal.abort() }))).toBe(ErrorCode.ABORTED)
    expect(store.gets).toBe(0)
  })
})

describe('Cas.get with a seal worker', () => {
  it('opens large chunks on the worker: right bytes, and a tampered one is CORRUPT, never bytes', async () => {
    const keys = deriveContentKeys(randomBytes(32))
    const sealer = new Sealer(keys)
    try {
      const kv = new MemoryStore()
      const large = new Uint8Array(randomBytes(512 * 1024))
      const small = new Uint8Array(randomBytes(4096))
      const largeId = await new Cas(kv, keys).put(large)
      const smallId = await new Cas(kv, keys).put(small)
      const cas = new Cas(kv, keys, { sealer })
      expect(Buffer.from(await cas.get(largeId)).equals(large)).toBe(true)
      expect(Buffer.from(await cas.get(smallId)).equals(small)).toBe(true)
      // The store still holds intact bytes after the worker opened a copy of them.
      expect(Buffer.from(await new Cas(kv, keys).get(largeId)).equals(large)).toBe(true)

      const sealed = await kv.get(largeId)
      const tampered = new Uint8Array(sealed)
      tampered[1000] = (tampered[1000] as number) ^ 1
      const bad = new MemoryStore()
      await bad.put(largeId, tampered)
      expect(await codeOf(new Cas(bad, keys, { sealer }).get(largeId))).toBe(ErrorCode.CORRUPT)
    } finally {
      await sealer.close()
    }
  })
})
