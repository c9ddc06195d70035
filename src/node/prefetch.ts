/**
 * Small files that arrive by sync come with their content: metadata is applied eagerly and
 * content is fetched lazily when read (ARCHITECTURE.md, "Sync"), but the content of a file of
 * at most SMALL_FILE_BYTES is fetched in the background right after its record is applied, as
 * Syncthing users expect: a directory of notes and configs synced from a laptop reads on the
 * other device even after the laptop has gone, and reading many small files does not cost one
 * round trip to a peer each. Large files stay lazy (their bytes move when read, or with
 * `bazil get`).
 *
 * The objects are read through the store set's reader, so they come from whichever peer or
 * store answers best and are kept in the local store by the fan-out (`keep`). Files start in
 * groups (refilled once half of a group is done), and the fan-out goes straight to the peers
 * for what the local store lacks, so their reads reach a peer in the same tick and share one want list:
 * started one by one, 291 of 390 requests for 2,000 files asked for one block each, and every
 * request is a stream the peer has to set up. Best effort: a failure (the peer went away) is
 * logged, and the read falls back to being lazy.
 */
import { walkTree } from '../cas/manifest.ts'
import type { Cas } from '../cas/cas.ts'
import type { EntryRecord } from '../sync/record.ts'
import type { KV, KVHas } from '../kv/kv.ts'
import { logger } from '../util/log.ts'

const log = logger('bazil:prefetch')

/** Files up to this size are fetched when their record arrives. */
export const SMALL_FILE_BYTES = 256 * 1024
/** Files fetched at once; more start when at most half of them are left. */
const CONCURRENCY = 64
/** Files waiting; beyond this, more are left lazy (a huge burst should not grow memory). */
const MAX_QUEUED = 100_000

export interface PrefetchDeps {
  cas: Cas
  /** Where the objects should end up. */
  local: KV & KVHas
  /** Reads from any store or peer, keeping what it reads in the local store (the store set). */
  reader: KV
  signal: AbortSignal
}

export class Prefetcher {
  readonly #deps: PrefetchDeps
  readonly #queue: Array<{ root: string, depth: number, size: number }> = []
  #running = 0

  constructor (deps: PrefetchDeps) {
    this.#deps = deps
  }

  /** Queues the content of the small files among applied records. */
  offer (records: EntryRecord[]): void {
    for (const record of records) {
      const data = record.data
      if (data?.type !== 'file' || data.content == null || data.size > SMALL_FILE_BYTES) continue
      if (this.#queue.length >= MAX_QUEUED) break
      this.#queue.push({ root: data.content.root, depth: data.content.depth, size: data.size })
    }
    this.#pump()
  }

  #pump (): void {
    if (this.#running > CONCURRENCY / 2) return
    while (this.#running < CONCURRENCY && this.#queue.length > 0 && !this.#deps.signal.aborted) {
      const next = this.#queue.shift()
      if (next === undefined) break
      this.#running++
      this.#fetch(next).catch((err: unknown) => {
        if (!this.#deps.signal.aborted) log('prefetching %s: %s', next.root, (err as Error).message)
      }).finally(() => {
        this.#running--
        this.#pump()
      })
    }
  }

  async #fetch (ref: { root: string, depth: number, size: number }): Promise<void> {
    const { cas, local, reader, signal } = this.#deps
    for await (const { id } of walkTree(cas, ref, { signal, size: ref.size })) {
      if (await local.has(id, { signal })) continue
      await reader.get(id, { signal })
    }
  }
}
