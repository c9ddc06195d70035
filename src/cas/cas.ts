/**
 * The content-addressed store: turns plaintext chunks into sealed objects under keyed ids and
 * back. Writes are deduplicated (a chunk whose id the store already has is not sealed or sent
 * again); every read opens and re-hashes (see seal.ts), so a bad object is a CORRUPT error and
 * never wrong bytes. A small cache of opened chunks serves the read path, and readers of a chunk
 * being fetched share one fetch: each waits under its own signal, and the fetch is aborted once
 * none of them waits any more (a reader that gives up never cancels another's read).
 */
import { BazilError, ErrorCode, isBazilError, throwIfAborted } from '../errors.ts'
import { hasCapability } from '../kv/kv.ts'
import type { KV, KVOptions, KVPutOptions } from '../kv/kv.ts'
import { chunkId, open, seal, toHex } from './seal.ts'
import type { ContentKeys } from './keys.ts'
import { logger } from '../util/log.ts'
import { LruCache } from '../util/lru.ts'
import type { Sealer } from './sealer.ts'
import type { SlotPool, SlotRef } from './slots.ts'
import { keyedChunkerParams } from './chunker.ts'
import type { ChunkerParams } from './chunker.ts'

const log = logger('bazil:cas')
/** Chunks from this size up are sealed and opened on the worker (a round trip costs more than sealing 10 KiB). */
export const SEAL_ON_WORKER_BYTES = 128 * 1024
/** A cached chunk stale when its reader came to it (see `opened`) is fetched again this often at most. */
const STALE_RETRIES = 3

/**
 * An opened chunk in the cache: its own memory, or a shared slot (see slots.ts) that the cache
 * releases when it drops the chunk. A slot never leaves this module: readers copy out of it.
 */
type Opened = Uint8Array | InSlot
interface InSlot { slot: SlotRef, length: number }

export interface CasOptions {
  /** Bytes of opened (plaintext) chunks kept for reads. */
  cacheBytes?: number
  /** Hash and seal on a worker thread (see sealer.ts). */
  sealer?: Sealer
}

export interface CasStats {
  chunksWritten: number
  bytesWritten: number
  chunksDeduped: number
}

export class Cas {
  readonly kv: KV
  private readonly keys: ContentKeys
  private readonly sealer: Sealer | undefined
  private readonly cache: LruCache<string, Opened>
  private readonly slots: SlotPool | undefined
  private readonly inflight = new Map<string, SharedFetch>()
  readonly stats: CasStats = { chunksWritten: 0, bytesWritten: 0, chunksDeduped: 0 }
  /** How this volume cuts content: default sizes, gear table keyed by the owner secret. */
  readonly chunkerParams: ChunkerParams

  constructor (kv: KV, keys: ContentKeys, options: CasOptions = {}) {
    this.kv = kv
    this.keys = keys
    this.sealer = options.sealer
    this.chunkerParams = keyedChunkerParams(keys.chunkerKey)
    this.slots = options.sealer?.slots
    this.cache = new LruCache<string, Opened>(
      options.cacheBytes ?? 64 * 1024 * 1024,
      v => v instanceof Uint8Array ? v.byteLength : v.slot.bytes.byteLength,
      v => { if (!(v instanceof Uint8Array)) this.slots?.release(v.slot) }
    )
  }

  /** Id of a plaintext without storing it. */
  idOf (plain: Uint8Array): Uint8Array {
    return chunkId(this.keys, plain)
  }

  /** Stores a plaintext chunk (once) and returns its id. */
  async put (plain: Uint8Array, options?: KVPutOptions): Promise<Uint8Array> {
    const id = chunkId(this.keys, plain)
    await this.putWithId(id, plain, options)
    return id
  }

  /**
   * Stores a chunk and returns its id, hashing and sealing on the worker when there is one.
   * `plain` must own its ArrayBuffer and is not usable afterwards (it may be transferred).
   */
  async store (plain: Uint8Array, options?: KVPutOptions): Promise<Uint8Array> {
    if (plain.byteLength < SEAL_ON_WORKER_BYTES) {
      // A small chunk costs less to seal here than a round trip to the worker.
      const id = chunkId(this.keys, plain)
      await this.putWithId(id, plain, options)
      return id
    }
    if (this.sealer === undefined) return await this.put(plain, options)
    const { id, sealed } = await this.sealer.seal(plain)
    if (hasCapability(this.kv, 'has') && await this.kv.has(id, options)) {
      this.stats.chunksDeduped++
      return id
    }
    await this.kv.put(id, sealed, options)
    this.stats.chunksWritten++
    this.stats.bytesWritten += sealed.byteLength
    return id
  }

  /** Stores a chunk whose id the caller already computed. */
  async putWithId (id: Uint8Array, plain: Uint8Array, options?: KVPutOptions): Promise<void> {
    if (hasCapability(this.kv, 'has') && await this.kv.has(id, options)) {
      this.stats.chunksDeduped++
      return
    }
    const sealed = seal(this.keys, id, plain)
    await this.kv.put(id, sealed, options)
    this.stats.chunksWritten++
    this.stats.bytesWritten += sealed.byteLength
  }

  /** Waits until everything stored so far (lazily too) is durable. */
  async flush (options?: KVOptions): Promise<void> {
    if (hasCapability(this.kv, 'flush')) await this.kv.flush(options)
  }

  /**
   * Fetches, opens and verifies a chunk. NOT_FOUND if absent, CORRUPT if it fails verification.
   * The bytes may be the cache's own (do not change them); a chunk held in a shared slot is
   * copied out, since the slot is reused once the cache drops it.
   */
  async get (id: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    return await this.opened(id, options, (bytes, length) => bytes.buffer instanceof SharedArrayBuffer ? bytes.slice(0, length) : bytes)
  }

  /**
   * Copies `length` bytes of the chunk `id` from `offset` into `target` at `at`, without a copy
   * of the chunk for the caller. CORRUPT if the chunk is not `chunkLength` bytes long (its
   * manifest says otherwise).
   */
  async readInto (id: Uint8Array, chunkLength: number, offset: number, length: number, target: Uint8Array, at: number, options?: KVOptions): Promise<void> {
    await this.opened(id, options, (bytes, total) => {
      if (total !== chunkLength) throw new BazilError(ErrorCode.CORRUPT, 'chunk length does not match its manifest')
      target.set(bytes.subarray(offset, offset + length), at)
    })
    // A read to the chunk's end is most likely a sequential reader done with it: it goes first
    // when room is needed, before the read-ahead that reader has not reached yet.
    if (offset + length === chunkLength) this.cache.demote(toHex(id))
  }

  /** Fetches and opens a chunk into the cache (read-ahead); resolves when it is there. */
  async load (id: Uint8Array, options?: KVOptions): Promise<void> {
    await this.opened(id, options, () => {})
  }

  /**
   * Runs `use` on the opened chunk `id` (cached or fetched), synchronously, while its memory is
   * certain to hold it: a slot the cache dropped and reused between the fetch and this reader
   * is noticed by its generation, and the chunk fetched again.
   */
  private async opened<T> (id: Uint8Array, options: KVOptions | undefined, use: (bytes: Uint8Array, length: number) => T): Promise<T> {
    const key = toHex(id)
    for (let attempt = 0; ; attempt++) {
      const value = this.cache.get(key) ?? await this.fetchShared(id, key, options)
      if (value instanceof Uint8Array) return use(value, value.byteLength)
      if (this.slots?.live(value.slot) === true) return use(value.slot.bytes, value.length)
      if (attempt >= STALE_RETRIES) throw new BazilError(ErrorCode.IO, `reading chunk ${key}: its cache entry kept being dropped`)
    }
  }

  private async fetchShared (id: Uint8Array, key: string, options?: KVOptions): Promise<Opened> {
    throwIfAborted(options?.signal)
    let shared = this.inflight.get(key)
    if (shared === undefined) {
      const controller = new AbortController()
      const fetch: SharedFetch = { controller, waiters: 0, done: this.fetch(id, key, { signal: controller.signal }) }
      void fetch.done.then(() => { this.forget(key, fetch) }, () => { this.forget(key, fetch) })
      this.inflight.set(key, fetch)
      shared = fetch
    }
    return await this.join(key, shared, options?.signal)
  }

  /** Waits for a shared fetch until it settles or `signal` fires; the last waiter to leave aborts it. */
  private async join (key: string, fetch: SharedFetch, signal: AbortSignal | undefined): Promise<Opened> {
    fetch.waiters++
    return await new Promise<Opened>((resolve, reject) => {
      let left = false
      const leave = (): void => {
        left = true
        signal?.removeEventListener('abort', onAbort)
        fetch.waiters--
      }
      const onAbort = (): void => {
        if (left) return
        leave()
        if (fetch.waiters === 0) {
          this.forget(key, fetch)
          fetch.controller.abort(signal?.reason)
        }
        reject(new BazilError(ErrorCode.ABORTED, `reading chunk ${key}: aborted`, { cause: signal?.reason }))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      fetch.done.then(value => { if (!left) { leave(); resolve(value) } }, (err: unknown) => { if (!left) { leave(); reject(err) } })
    })
  }

  private forget (key: string, fetch: SharedFetch): void {
    if (this.inflight.get(key) === fetch) this.inflight.delete(key)
  }

  /**
   * Caches a chunk that was opened and verified elsewhere — the fan-out's check of a copy from
   * another store — so the read that asked for it does not open it a second time.
   */
  remember (id: Uint8Array, plain: Uint8Array): void {
    this.cache.set(toHex(id), plain)
  }

  /**
   * Opens and verifies `sealed` as the object `id` and caches the chunk, like a read would:
   * the fan-out's check of a copy from another store. CORRUPT unless it is that object.
   * `sealed` stays the caller's.
   */
  async admit (id: Uint8Array, sealed: Uint8Array): Promise<void> {
    const key = toHex(id)
    this.cache.set(key, await this.openSealed(id, key, sealed, { copy: true }))
  }

  /** Reads and verifies a chunk, bypassing the cache (used by `bazil check`). */
  async verify (id: Uint8Array, options?: KVOptions): Promise<number> {
    const sealed = await this.kv.get(id, options)
    return open(this.keys, id, sealed).byteLength
  }

  /** Opens sealed bytes fetched elsewhere; throws CORRUPT unless they are the object `id`. */
  checkSealed (id: Uint8Array, sealed: Uint8Array): number {
    return open(this.keys, id, sealed).byteLength
  }

  /*
   * fetch, opened and openSealed are written with `then`, not `await`, on purpose: an async
   * function keeps its locals until it returns, so the sealed bytes would live on while the
   * worker queue is long, survive two scavenges and move to the old generation, and then only
   * full collections free them (see DECISIONS.md, "Shared slots for chunks").
   */
  private async fetch (id: Uint8Array, key: string, options?: KVOptions): Promise<Opened> {
    return await this.kv.get(id, options).then(sealed => this.fetched(id, key, sealed), (err: unknown) => {
      if (isBazilError(err)) throw err
      throw new BazilError(ErrorCode.IO, `reading chunk ${key}`, { cause: err })
    })
  }

  private fetched (id: Uint8Array, key: string, sealed: Uint8Array): Opened | Promise<Opened> {
    const verified = this.cache.get(key) // opened while the fan-out checked it (admit, remember)
    if (verified !== undefined && (verified instanceof Uint8Array || this.slots?.live(verified.slot) === true)) return verified
    // `sealed` is ours (see KV.get): it may be transferred to the worker.
    return this.openSealed(id, key, sealed, { copy: false }).then(opened => {
      this.cache.set(key, opened)
      return opened
    })
  }

  /**
   * A free slot of at least `size` bytes; when every one that fits is taken, the cache drops its
   * least recently used chunk held in one (slots are the cache's memory, not an extra to it).
   */
  private takeSlot (size: number): SlotRef | undefined {
    const slots = this.slots
    if (slots === undefined) return undefined
    for (;;) {
      const slot = slots.take(size)
      if (slot !== undefined) return slot
      if (!this.cache.dropOldest(v => !(v instanceof Uint8Array) && v.slot.bytes.byteLength >= size)) return undefined
    }
  }

  /**
   * Opens `sealed` as `id`: a large chunk on the worker, into a shared slot when one is free
   * (the sealed bytes are copied there; the worker writes the plaintext over them), else into
   * memory of its own. Logs and throws CORRUPT when it is not that object.
   */
  private openSealed (id: Uint8Array, key: string, sealed: Uint8Array, options: { copy: boolean }): Promise<Opened> {
    const failed = (err: unknown): never => {
      if (isBazilError(err, 'CORRUPT')) log.error('chunk %s failed verification: %s', key, (err as Error).message)
      throw err
    }
    try {
      if (this.sealer === undefined || sealed.byteLength < SEAL_ON_WORKER_BYTES) return Promise.resolve(open(this.keys, id, sealed))
      let slot = this.takeSlot(sealed.byteLength)
      if (slot !== undefined && slot.bytes.byteLength > this.cache.maxSize) { // the cache could not hold it
        this.slots?.release(slot)
        slot = undefined
      }
      if (slot === undefined) return this.sealer.open(id, sealed, options).catch(failed)
      if (!options.copy && ownsBuffer(sealed)) return this.openInSlot(id, slot, sealed).catch(failed)
      slot.bytes.set(sealed)
      return this.openInSlot(id, slot, sealed.byteLength).catch(failed)
    } catch (err) {
      return Promise.reject(err).catch(failed)
    }
  }

  /** Opens into `slot` the sealed bytes there (`source` their length) or `source` itself (transferred). */
  private async openInSlot (id: Uint8Array, slot: SlotRef, source: number | Uint8Array): Promise<Opened> {
    const sealer = this.sealer as Sealer
    try {
      return { slot, length: typeof source === 'number' ? await sealer.openInSlot(id, slot, source) : await sealer.openToSlot(id, source, slot) }
    } catch (err) {
      this.slots?.release(slot)
      throw err
    }
  }
}

function ownsBuffer (b: Uint8Array): boolean {
  return b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
}

/** One fetch of a chunk that several readers may wait for. */
interface SharedFetch {
  done: Promise<Opened>
  controller: AbortController
  waiters: number
}
