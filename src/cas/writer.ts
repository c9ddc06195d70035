/**
 * Streams file content into the CAS: reads the source in large blocks, cuts it with the
 * content-defined chunker, stores each chunk (a few puts in flight so sealing overlaps disk
 * I/O), turns all-zero chunks into holes, and builds the manifest tree.
 */
import { throwIfAborted } from '../errors.ts'
import type { KVOptions } from '../kv/kv.ts'
import type { Cas } from './cas.ts'
import { nextChunkLength, DEFAULT_CHUNKER_PARAMS } from './chunker.ts'
import type { ChunkerParams } from './chunker.ts'
import { buildTree, isAllZero } from './manifest.ts'
import type { ContentRef, ManifestEntry } from './manifest.ts'

const ZERO_ID = new Uint8Array(32)
const MAX_PUTS_IN_FLIGHT = 8

/** Reads source bytes [offset, offset+length) into target[0..length). */
export type ReadAt = (offset: number, length: number, target: Buffer) => Promise<void>

export interface WriteContentOptions extends KVOptions {
  params?: ChunkerParams
}

export async function writeContent (cas: Cas, size: number, readAt: ReadAt, options: WriteContentOptions = {}): Promise<ContentRef | null> {
  if (size === 0) return null
  const params = options.params ?? DEFAULT_CHUNKER_PARAMS
  const blockSize = Math.max(8 * 1024 * 1024, params.maxSize * 2)
  const buf = Buffer.allocUnsafe(blockSize)
  const entries: ManifestEntry[] = []
  const inflight = new Set<Promise<void>>()
  let failure: unknown
  let filled = 0 // bytes of buf holding unconsumed source
  let consumedTo = 0 // source offset of buf[0]
  while (consumedTo < size) {
    throwIfAborted(options.signal)
    const want = Math.min(blockSize - filled, size - (consumedTo + filled))
    if (want > 0) {
      await readAt(consumedTo + filled, want, buf.subarray(filled, filled + want))
      filled += want
    }
    const eof = consumedTo + filled >= size
    let start = 0
    for (;;) {
      const n = nextChunkLength(buf, start, filled, eof, params)
      if (n <= 0) break
      // The chunk's bytes are copied: buf is reused for the next block while puts are in flight.
      const chunk = Buffer.from(buf.subarray(start, start + n))
      start += n
      if (isAllZero(chunk)) {
        entries.push({ id: ZERO_ID, length: n })
        continue
      }
      const id = cas.idOf(chunk)
      entries.push({ id, length: n })
      const put = cas.putWithId(id, chunk, options).catch(err => { failure ??= err })
      inflight.add(put)
      void put.finally(() => inflight.delete(put))
      if (inflight.size >= MAX_PUTS_IN_FLIGHT) await Promise.race(inflight)
      if (failure !== undefined) break
    }
    if (failure !== undefined) break
    buf.copy(buf, 0, start, filled)
    filled -= start
    consumedTo += start
    if (eof && filled === 0) break
  }
  await Promise.all(inflight)
  if (failure !== undefined) throw failure
  return await buildTree(cas, entries, options)
}
