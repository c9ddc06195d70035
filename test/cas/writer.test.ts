import { describe, it, expect } from 'vitest'
import { createCipheriv } from 'node:crypto'
import { Cas } from '../../src/cas/cas.ts'
import { deriveContentKeys } from '../../src/cas/keys.ts'
import { writeContent } from '../../src/cas/writer.ts'
import { ContentReader } from '../../src/cas/manifest.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import { Sealer } from '../../src/cas/sealer.ts'

/** Deterministic incompressible bytes: an AES-CTR keystream under a fixed key. */
function pseudoRandom (size: number, seed = 1): Buffer {
  const cipher = createCipheriv('aes-256-ctr', Buffer.alloc(32, seed), Buffer.alloc(16))
  const out = Buffer.allocUnsafe(size)
  const zeros = Buffer.alloc(Math.min(size, 16 * 1024 * 1024))
  for (let pos = 0; pos < size; pos += zeros.length) {
    const n = Math.min(zeros.length, size - pos)
    cipher.update(zeros.subarray(0, n)).copy(out, pos)
  }
  return out
}

function source (data: Buffer) {
  return async (offset: number, length: number, target: Buffer): Promise<void> => {
    data.copy(target, 0, offset, offset + length)
  }
}

describe('writeContent', () => {
  it('stores identical content once', async () => {
    const cas = new Cas(new MemoryStore(), deriveContentKeys(Buffer.alloc(32, 7)))
    const data = pseudoRandom(8 * 1024 * 1024)
    const a = await writeContent(cas, data.length, source(data))
    const written = cas.stats.bytesWritten
    const b = await writeContent(cas, data.length, source(data))
    expect(b).toEqual(a)
    expect(cas.stats.bytesWritten).toBe(written)
  })

  it('re-stores less than 1 MiB after inserting 100 bytes near the start of a 1 GiB file', async () => {
    const cas = new Cas(new MemoryStore(), deriveContentKeys(Buffer.alloc(32, 9)))
    const size = 1024 * 1024 * 1024
    const data = pseudoRandom(size)
    await writeContent(cas, size, source(data))
    const before = cas.stats.bytesWritten
    const edited = Buffer.concat([data.subarray(0, 4096), pseudoRandom(100, 3), data.subarray(4096)])
    const ref = await writeContent(cas, edited.length, source(edited))
    const restored = cas.stats.bytesWritten - before
    expect(restored).toBeGreaterThan(0)
    expect(restored).toBeLessThan(1024 * 1024)
    // And the edited file reads back exactly, at a few random places.
    const reader = new ContentReader(cas, ref!, edited.length)
    for (const at of [0, 4000, 4196, 123_456_789, edited.length - 10]) {
      const out = Buffer.alloc(10)
      await reader.read(at, Math.min(10, edited.length - at), out, 0)
      expect(out.subarray(0, Math.min(10, edited.length - at)).equals(edited.subarray(at, at + 10))).toBe(true)
    }
  })

  it('gives the same ids and content when sealing on the worker thread', async () => {
    const keys = deriveContentKeys(Buffer.alloc(32, 4))
    const sealer = new Sealer(keys)
    try {
      const inline = new Cas(new MemoryStore(), keys)
      const kv = new MemoryStore()
      const worker = new Cas(kv, keys, { sealer })
      const data = pseudoRandom(20 * 1024 * 1024, 4)
      const a = await writeContent(inline, data.length, source(data))
      const b = await writeContent(worker, data.length, source(data))
      expect(b).toEqual(a)
      const out = Buffer.alloc(data.length)
      await new ContentReader(new Cas(kv, keys), b!, data.length).read(0, data.length, out, 0)
      expect(out.equals(data)).toBe(true)
    } finally {
      await sealer.close()
    }
  })

  it('turns zero runs into holes that are not stored', async () => {
    const cas = new Cas(new MemoryStore(), deriveContentKeys(Buffer.alloc(32, 5)))
    const data = Buffer.alloc(64 * 1024 * 1024)
    data.write('start', 0)
    const ref = await writeContent(cas, data.length, source(data))
    expect(cas.stats.bytesWritten).toBeLessThan(8 * 1024 * 1024)
    const out = Buffer.alloc(data.length)
    await new ContentReader(cas, ref!, data.length).read(0, data.length, out, 0)
    expect(out.equals(data)).toBe(true)
  })
})
