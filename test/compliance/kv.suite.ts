/**
 * The KV compliance suite: the contract of src/kv/kv.ts as tests, run by every backend (local
 * disk, memory, and later the peer, SFTP and S3 stores) against the real thing. A backend's
 * test file is a few lines: `kvComplianceSuite('LocalStore', async () => ({ kv, teardown }))`.
 *
 * `setup()` must return an empty store, fresh for each test. Optional capabilities (has,
 * delete, keys, stat) are tested only when the backend has them. Read-only backends (a peer
 * serves only reads) pass `readOnly.seed`, which the suite uses to store values another way.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it, onTestFinished } from 'vitest'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { hasCapability } from '../../src/kv/kv.ts'
import type { KV } from '../../src/kv/kv.ts'

export interface KVSetup { kv: KV, teardown?: () => Promise<void> }

export interface KVSuiteOptions {
  /** Peers only serve reads: the suite seeds values through `seed` instead of `kv.put`. */
  readOnly?: false | { seed: (key: Uint8Array, value: Uint8Array) => Promise<void> }
}

const MiB = 1024 * 1024

export function kvComplianceSuite (name: string, setup: () => Promise<KVSetup>, options: KVSuiteOptions = {}): void {
  const readOnly = options.readOnly ?? false
  const writable = readOnly === false

  /** Opens a fresh store for the current test; its teardown runs when the test finishes. */
  async function open (): Promise<KV> {
    const { kv, teardown } = await setup()
    if (teardown !== undefined) onTestFinished(teardown)
    return kv
  }

  async function store (kv: KV, key: Uint8Array, value: Uint8Array): Promise<void> {
    if (readOnly === false) await kv.put(key, value)
    else await readOnly.seed(key, value)
  }

  describe(`KV compliance: ${name}`, () => {
    it.each([
      ['an empty value', 0],
      ['a 1-byte value', 1],
      ['a 4 MiB random value', 4 * MiB]
    ])('round-trips %s', async (_label, size) => {
      const kv = await open()
      const key = randomBytes(32)
      const value = randomBytes(size)
      await store(kv, key, value)
      const got = await kv.get(key)
      expect(got).toBeInstanceOf(Uint8Array)
      expectBytes(got, value)
    })

    it('rejects get of an absent key with NOT_FOUND', async () => {
      const kv = await open()
      await expectCode(kv.get(randomBytes(32)), ErrorCode.NOT_FOUND)
    })

    it('keeps all-zero and all-0xff keys apart from each other and from near neighbours', async () => {
      const kv = await open()
      const zero = new Uint8Array(32)
      const ones = new Uint8Array(32).fill(0xff)
      const zeroPlusOne = new Uint8Array(32); zeroPlusOne[31] = 1
      const entries: Array<[Uint8Array, Uint8Array]> = [
        [zero, randomBytes(100)], [ones, randomBytes(101)], [zeroPlusOne, randomBytes(102)]
      ]
      for (const [key, value] of entries) await store(kv, key, value)
      for (const [key, value] of entries) expectBytes(await kv.get(key), value)
    })

    it('stores and reads back 200 keys written concurrently', async () => {
      const kv = await open()
      const entries = Array.from({ length: 200 }, (_, i) => [randomBytes(32), randomBytes(1 + i * 37)] as const)
      await Promise.all(entries.map(async ([key, value]) => { await store(kv, key, value) }))
      const got = await Promise.all(entries.map(async ([key]) => await kv.get(key)))
      got.forEach((value, i) => { expectBytes(value, entries[i]![1]) })
    })

    it('does not alias the caller\'s buffers', async () => {
      const kv = await open()
      const key = randomBytes(32)
      const value = randomBytes(64)
      const original = Buffer.from(value)
      await store(kv, key, value)
      value.fill(0)
      const first = await kv.get(key)
      expectBytes(first, original)
      first.fill(0)
      expectBytes(await kv.get(key), original)
    })

    it('rejects get with an already aborted signal with ABORTED', async () => {
      const kv = await open()
      const key = randomBytes(32)
      await store(kv, key, randomBytes(10))
      await expectCode(kv.get(key, { signal: AbortSignal.abort() }), ErrorCode.ABORTED)
    })

    it('ends a get aborted mid-flight with ABORTED or the whole value', async () => {
      const kv = await open()
      const value = randomBytes(4 * MiB)
      for (const when of abortPoints) {
        const key = randomBytes(32)
        await store(kv, key, value)
        const ac = new AbortController()
        const outcome = settle(kv.get(key, { signal: ac.signal }))
        await when(); ac.abort()
        const result = await outcome
        if (result.ok) expectBytes(result.value, value)
        else expectCodeOf(result.error, ErrorCode.ABORTED)
      }
    })

    if (writable) {
      it('treats a repeated put as a no-op that succeeds, also when concurrent', async () => {
        const kv = await open()
        const key = randomBytes(32)
        const value = randomBytes(1000)
        await Promise.all(Array.from({ length: 10 }, async () => { await kv.put(key, value) }))
        await kv.put(key, value)
        expectBytes(await kv.get(key), value)
        if (hasCapability(kv, 'stat')) expect(await kv.stat()).toEqual({ objects: 1, bytes: 1000 })
      })

      it('rejects put with an already aborted signal with ABORTED and stores nothing', async () => {
        const kv = await open()
        const key = randomBytes(32)
        await expectCode(kv.put(key, randomBytes(10), { signal: AbortSignal.abort() }), ErrorCode.ABORTED)
        await expectCode(kv.get(key), ErrorCode.NOT_FOUND)
      })

      it('ends a put aborted mid-flight with ABORTED or success, never a partial value', async () => {
        const kv = await open()
        const value = randomBytes(4 * MiB)
        for (const when of abortPoints) {
          const key = randomBytes(32)
          const ac = new AbortController()
          const outcome = settle(kv.put(key, value, { signal: ac.signal }))
          await when(); ac.abort()
          const result = await outcome
          if (!result.ok) expectCodeOf(result.error, ErrorCode.ABORTED)
          const after = await settle(kv.get(key))
          if (after.ok) expectBytes(after.value, value)
          else expectCodeOf(after.error, ErrorCode.NOT_FOUND)
          // Whatever an aborted put left behind must not stop the next put of that key.
          await kv.put(key, value)
          expectBytes(await kv.get(key), value)
        }
      })
    }

    describe('capabilities', () => {
      it('has: true for a stored key, false for an absent one', async (ctx) => {
        const kv = await open()
        if (!hasCapability(kv, 'has')) { ctx.skip(`${name} has no 'has' capability`); return }
        const key = randomBytes(32)
        await store(kv, key, randomBytes(10))
        expect(await kv.has(key)).toBe(true)
        expect(await kv.has(randomBytes(32))).toBe(false)
        await expectCode(kv.has(key, { signal: AbortSignal.abort() }), ErrorCode.ABORTED)
      })

      it('delete: removes a key, accepts an absent one, and the key can be stored again', async (ctx) => {
        const kv = await open()
        if (!hasCapability(kv, 'delete')) { ctx.skip(`${name} has no 'delete' capability`); return }
        const key = randomBytes(32)
        const other = randomBytes(32)
        const value = randomBytes(10)
        await store(kv, key, value)
        await store(kv, other, randomBytes(11))
        await kv.delete(key)
        await expectCode(kv.get(key), ErrorCode.NOT_FOUND)
        if (hasCapability(kv, 'has')) expect(await kv.has(key)).toBe(false)
        await kv.delete(key)
        await kv.delete(randomBytes(32))
        expect((await kv.get(other)).byteLength).toBe(11)
        await store(kv, key, value)
        expectBytes(await kv.get(key), value)
        await expectCode(kv.delete(key, { signal: AbortSignal.abort() }), ErrorCode.ABORTED)
      })

      it('keys: lists exactly the keys stored (and not deleted ones)', async (ctx) => {
        const kv = await open()
        if (!hasCapability(kv, 'keys')) { ctx.skip(`${name} has no 'keys' capability`); return }
        expect(await collectHex(kv.keys())).toEqual([])
        const keys = [new Uint8Array(32), new Uint8Array(32).fill(0xff), ...Array.from({ length: 30 }, () => randomBytes(32))]
        await Promise.all(keys.map(async key => { await store(kv, key, randomBytes(5)) }))
        const expected = keys.map(hex).sort()
        expect(await collectHex(kv.keys())).toEqual(expected)
        if (hasCapability(kv, 'delete')) {
          await kv.delete(keys[0]!)
          expect(await collectHex(kv.keys())).toEqual(expected.filter(k => k !== hex(keys[0]!)))
        }
        await expectCode(collectHex(kv.keys({ signal: AbortSignal.abort() })), ErrorCode.ABORTED)
      })

      it('stat: counts objects and bytes as they are stored and deleted', async (ctx) => {
        const kv = await open()
        if (!hasCapability(kv, 'stat')) { ctx.skip(`${name} has no 'stat' capability`); return }
        expect(await kv.stat()).toEqual({ objects: 0, bytes: 0 })
        const sizes = [0, 1, 1000, 65536]
        const keys = sizes.map(() => randomBytes(32))
        await Promise.all(keys.map(async (key, i) => { await store(kv, key, randomBytes(sizes[i]!)) }))
        expect(await kv.stat()).toEqual({ objects: 4, bytes: 66537 })
        if (hasCapability(kv, 'delete')) {
          await kv.delete(keys[2]!)
          await kv.delete(keys[2]!)
          expect(await kv.stat()).toEqual({ objects: 3, bytes: 65537 })
        }
        await expectCode(kv.stat({ signal: AbortSignal.abort() }), ErrorCode.ABORTED)
      })
    })
  })
}

/** Moments at which to fire an abort after starting an operation. */
const abortPoints: Array<() => Promise<void>> = [
  async () => {}, // same tick
  async () => { await new Promise(resolve => setImmediate(resolve)) },
  async () => { await new Promise(resolve => setTimeout(resolve, 1)) },
  async () => { await new Promise(resolve => setTimeout(resolve, 5)) }
]

type Settled<T> = { ok: true, value: T } | { ok: false, error: unknown }

/** Attaches handlers at once so a rejection is never reported as unhandled. */
async function settle<T> (promise: Promise<T>): Promise<Settled<T>> {
  return await promise.then(value => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }))
}

async function expectCode (promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  const result = await settle(promise)
  expect(result.ok, `expected a rejection with ${code}`).toBe(false)
  if (!result.ok) expectCodeOf(result.error, code)
}

function expectCodeOf (error: unknown, code: ErrorCode): void {
  expect(error, `expected a BazilError ${code}, got ${String(error)}`).toBeInstanceOf(BazilError)
  expect((error as BazilError).code).toBe(code)
}

/** Compares bytes without vitest diffing megabytes on failure. */
function expectBytes (actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.byteLength).toBe(expected.byteLength)
  expect(Buffer.compare(actual, expected), 'bytes differ').toBe(0)
}

function hex (key: Uint8Array): string {
  return Buffer.from(key).toString('hex')
}

async function collectHex (keys: AsyncIterable<Uint8Array>): Promise<string[]> {
  const out: string[] = []
  for await (const key of keys) out.push(hex(key))
  return out.sort()
}
