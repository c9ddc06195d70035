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
import { keyedChunkerParams } from './chunker.ts'
import type { ChunkerParams } from './chunker.ts'

const log = logger('bazil:cas')
/** Chunks from this size up are sealed and opened on the worker (a round trip costs more than sealing 10 KiB). */
export const SEAL_ON_WORKER_BYTES = 128 * 1024

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
  private readonly cache: LruCache<string, Uint8Array>
  private readonly inflight = new Map<string, SharedFetch>()
  readonly stats: CasStats = { chunksWritten: 0, bytesWritten: 0, chunksDeduped: 0 }
  /** How this volume cuts content: default sizes, gear table keyed by the owner secret. */
  readonly chunkerParams: ChunkerParams

  constructor (kv: KV, keys: ContentKeys, options: CasOptions = {}) {
    this.kv = kv
    this.keys = keys
    this.sealer = options.sealer
    this.chunkerParams = keyedChunkerParams(keys.chunkerKey)
    this.cache = new LruCache(options.cacheBytes ?? 64 * 1024 * 1024, v => v.byteLength)
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

  /** Fetches, opens and verifies a chunk. NOT_FOUND if absent, CORRUPT if it fails verification. */
  async get (id: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    const key = toHex(id)
    const cached = this.cache.get(key)
    if (cached !== undefined) return cached
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
  private async join (key: string, fetch: SharedFetch, signal: AbortSignal | undefined): Promise<Uint8Array> {
    fetch.waiters++
    return await new Promise<Uint8Array>((resolve, reject) => {
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

  /** Reads and verifies a chunk, bypassing the cache (used by `bazil check`). */
  async verify (id: Uint8Array, options?: KVOptions): Promise<number> {
    const sealed = await this.kv.get(id, options)
    return open(this.keys, id, sealed).byteLength
  }

  /** Opens sealed bytes fetched elsewhere; throws CORRUPT unless they are the object `id`. */
  checkSealed (id: Uint8Array, sealed: Uint8Array): number {
    return open(this.keys, id, sealed).byteLength
  }

  private async fetch (id: Uint8Array, key: string, options?: KVOptions): Promise<Uint8Array> {
    let sealed: Uint8Array
    try {
      sealed = await this.kv.get(id, options)
    } catch (err) {
      if (isBazilError(err)) throw err
      throw new BazilError(ErrorCode.IO, `reading chunk ${key}`, { cause: err })
    }
    const verified = this.cache.get(key) // opened while the fan-out checked it (remember)
    if (verified !== undefined) return verified
    try {
      // A large chunk is opened on the worker, so a long read keeps the main thread for FUSE
      // (`sealed` is ours, see KV.get, and may be transferred there).
      const plain = this.sealer !== undefined && sealed.byteLength >= SEAL_ON_WORKER_BYTES
        ? await this.sealer.open(id, sealed)
        : open(this.keys, id, sealed)
      this.cache.set(key, plain)
      return plain
    } catch (err) {
      log.error('chunk %s failed verification: %s', key, (err as Error).message)
      throw err
    }
  }
}

/** One fetch of a chunk that several readers may wait for. */
interface SharedFetch {
  done: Promise<Uint8Array>
  controller: AbortController
  waiters: number
}
