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
