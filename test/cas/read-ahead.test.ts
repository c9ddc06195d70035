/**
 * Read-ahead of ContentReader: a read with `readAhead` starts fetching the chunks after it all
 * at once (a remote store or peer then has many requests in flight), and a read without it
 * fetches only the next chunk; what is read is right either way.
 */
import { createCipheriv } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { Cas } from '../../src/cas/cas.ts'
import { deriveContentKeys } from '../../src/cas/keys.ts'
import { ContentReader } from '../../src/cas/manifest.ts'
import { writeContent } from '../../src/cas/writer.ts'
import type { KVOptions } from '../../src/kv/kv.ts'
import { MemoryStore } from '../../src/kv/memory.ts'

/** A store whose gets take 20 ms and which counts how many run at once. */
class SlowStore extends MemoryStore {
  inFlight = 0
  maxInFlight = 0
  gets = 0
  override async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    this.gets++
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    try {
      await new Promise(resolve => setTimeout(resolve, 20))
      return await super.get(key, options)
    } finally {
      this.inFlight--
    }
  }
}

function pseudoRandom (size: number): Buffer {
  return createCipheriv('aes-256-ctr', Buffer.alloc(32, 3), Buffer.alloc(16)).update(Buffer.alloc(size))
}

/** A CAS that counts the chunk lookups its readers make. */
class CountingCas extends Cas {
  gets = 0
  override async get (id: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    this.gets++
    return await super.get(id, options)
  }
}

async function setup (): Promise<{ store: SlowStore, reader: ContentReader, data: Buffer, cas: CountingCas, objects: number }> {
  const store = new SlowStore()
  const keys = deriveContentKeys(Buffer.alloc(32, 5))
  const data = pseudoRandom(12 * 1024 * 1024)
  const ref = await writeContent(new Cas(store, keys), data.length, async (offset, length, target) => { data.copy(target, 0, offset, offset + length) })
  if (ref === null) throw new Error('no content written')
  // A fresh CAS: nothing cached.
  const cas = new CountingCas(store, keys)
  return { store, reader: new ContentReader(cas, ref, data.length), data, cas, objects: (await store.stat()).objects }
}

describe('ContentReader read-ahead', () => {
  it('fetches the chunks of the next bytes at once, and reads right', async () => {
    const { store, reader, data } = await setup()
    const out = Buffer.alloc(128 * 1024)
    await reader.read(0, out.length, out, 0, { prefetch: true, readAhead: 8 * 1024 * 1024 })
    expect(out.equals(data.subarray(0, out.length))).toBe(true)
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(store.maxInFlight).toBeGreaterThanOrEqual(8)
    const before = store.gets
    // What was fetched ahead is served from the cache.
    const later = Buffer.alloc(128 * 1024)
    await reader.read(4 * 1024 * 1024, later.length, later, 0)
    expect(later.equals(data.subarray(4 * 1024 * 1024, 4 * 1024 * 1024 + later.length))).toBe(true)
    expect(store.gets).toBe(before)
  })

  it('without read-ahead fetches one chunk at a time', async () => {
    const { store, reader } = await setup()
    const out = Buffer.alloc(128 * 1024)
    await reader.read(0, out.length, out, 0, { prefetch: true })
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(store.maxInFlight).toBeLessThanOrEqual(2)
  })

  it('a sequential reader with a frontier asks for each chunk about once, not once per read', async () => {
    const { store, reader, data, cas, objects } = await setup()
    const frontier = { to: 0 }
    const out = Buffer.alloc(data.length)
    const step = 128 * 1024
    for (let at = 0; at < data.length; at += step) {
      await reader.read(at, step, out, at, { prefetch: true, readAhead: 2 * 1024 * 1024, frontier })
    }
    expect(out.equals(data)).toBe(true)
    const reads = data.length / step
    // Without the frontier every read re-walks its 2 MiB window (~9 chunks): ~9 lookups per read.
    expect(cas.gets).toBeLessThanOrEqual(reads + 3 * objects)
    expect(frontier.to).toBeGreaterThanOrEqual(data.length)
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(store.gets).toBeLessThanOrEqual(objects)
  })
})
