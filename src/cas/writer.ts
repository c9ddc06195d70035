/**
 * Streams file content into the CAS: reads the source in large blocks, cuts it with the
 * content-defined chunker, stores each chunk (a few puts in flight so sealing overlaps disk
 * I/O), turns all-zero chunks into holes, and builds the manifest tree.
 *
 * Objects are stored lazily (visible at once, durable shortly after): call `cas.flush()` when
 * the content must be durable.
 *
 * `ContentBuilder` works incrementally: `feed` may be called as a file grows (it consumes
 * whole chunks only and leaves the unfinished tail for the next call), so a long sequential
 * write is chunked while it is still arriving; `writeContent` is the one-shot form.
 */
import { throwIfAborted } from '../errors.ts'
import type { KVOptions } from '../kv/kv.ts'
import type { Cas } from './cas.ts'
import { nextChunkLength } from './chunker.ts'
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

export class ContentBuilder {
  /** Source bytes already cut into chunks. */
  offset = 0
  private readonly entries: ManifestEntry[] = []
  private readonly inflight = new Set<Promise<void>>()
  private failure: unknown
  private readonly params: ChunkerParams
  private buf: Buffer | null = null

  constructor (private readonly cas: Cas, params?: ChunkerParams) {
    this.params = params ?? cas.chunkerParams
  }

  /** Cuts and stores chunks of source [offset, upTo); without eof the last partial chunk waits. */
  async feed (readAt: ReadAt, upTo: number, eof: boolean, options: KVOptions = {}): Promise<void> {
    // Large blocks for large files; a small file gets a buffer its own size (allocating 8 MiB
    // per small file kept the garbage collector busy most of an untar).
    const fullBlock = Math.max(8 * 1024 * 1024, this.params.maxSize * 2)
    const blockSize = Math.min(fullBlock, Math.max(upTo - this.offset, 1))
    if (this.buf === null || this.buf.byteLength < blockSize) this.buf = Buffer.allocUnsafe(blockSize)
    const buf = this.buf.subarray(0, blockSize)
    let filled = 0
    while (this.offset < upTo) {
      throwIfAborted(options.signal)
      const want = Math.min(blockSize - filled, upTo - (this.offset + filled))
      if (want > 0) {
        await readAt(this.offset + filled, want, buf.subarray(filled, filled + want))
        filled += want
      }
      const atEnd = this.offset + filled >= upTo
      let start = 0
      for (;;) {
        const n = nextChunkLength(buf, start, filled, eof && atEnd, this.params)
        if (n <= 0) break
        // Copied into its own memory: buf is reused while puts are in flight, and the copy
        // may be transferred to the sealing worker.
        const chunk = new Uint8Array(n)
        chunk.set(buf.subarray(start, start + n))
        this.store(chunk, options)
        start += n
        if (this.inflight.size >= MAX_PUTS_IN_FLIGHT) await Promise.race(this.inflight)
        if (this.failure !== undefined) throw this.failure
      }
      buf.copy(buf, 0, start, filled)
      filled -= start
      this.offset += start
      if (atEnd) break
    }
  }

  /** Waits for every put and builds the tree. Call after a feed with eof. */
  async finish (options: KVOptions = {}): Promise<ContentRef | null> {
    await Promise.all(this.inflight)
    if (this.failure !== undefined) throw this.failure
    this.buf = null
    return await buildTree(this.cas, this.entries, options)
  }

  /** Stops early: waits for puts in flight so nothing runs on after the caller gives up. */
  async abandon (): Promise<void> {
    await Promise.all(this.inflight)
    this.buf = null
  }

  private store (chunk: Uint8Array, options: KVOptions): void {
    if (isAllZero(chunk)) {
      this.entries.push({ id: ZERO_ID, length: chunk.byteLength })
      return
    }
    const entry: ManifestEntry = { id: ZERO_ID, length: chunk.byteLength }
    this.entries.push(entry)
    // Lazy: visible at once, durable in the background; a caller that needs durability (fsync)
    // calls cas.flush() afterwards.
    const put = this.cas.store(chunk, { ...options, lazy: true }).then(id => { entry.id = id }, err => { this.failure ??= err })
    this.inflight.add(put)
    void put.finally(() => this.inflight.delete(put))
  }
}

export async function writeContent (cas: Cas, size: number, readAt: ReadAt, options: WriteContentOptions = {}): Promise<ContentRef | null> {
  if (size === 0) return null
  const builder = new ContentBuilder(cas, options.params)
  try {
    await builder.feed(readAt, size, true, options)
  } catch (err) {
    await builder.abandon()
    throw err
  }
  return await builder.finish(options)
}
