/**
 * A paired peer as a read-only KV: `get` and `has` go over block exchange
 * (/bazil/block/1.0.0); `put` is NOT_SUPPORTED (a peer fills its own store). Values are the
 * peer's sealed bytes, passed on unverified — they are opaque to a KV and the CAS verifies
 * them on open — though the protocol checks each answer's id against the id asked.
 *
 * Single-key calls become want lists: calls made while earlier requests are in flight are
 * batched (up to MAX_IDS_PER_REQUEST ids per request, at most MAX_BATCHES_IN_FLIGHT requests
 * at once), so a burst of reads from the CAS costs a few streams, not one each — and never
 * more than the peer accepts per connection. A caller's abort rejects its own call at once;
 * the batch goes on for the others and is cancelled only when nobody waits for it any more.
 */
import { BazilError, ErrorCode, throwIfAborted } from '../errors.ts'
import type { BlockExchange } from '../../protocols/block-exchange/index.ts'
import { MAX_ID_BYTES, MAX_IDS_PER_REQUEST, MIN_ID_BYTES } from '../../protocols/block-exchange/index.ts'
import type { KV, KVHas, KVOptions } from './kv.ts'

/** Requests in flight per kind (get, has); well under the peer's MAX_INBOUND_STREAMS. */
const MAX_BATCHES_IN_FLIGHT = 4

export class PeerStore implements KV, KVHas {
  readonly peerId: string
  readonly #gets: WantList<Uint8Array>
  readonly #haves: WantList<boolean>

  constructor (exchange: Pick<BlockExchange, 'fetch' | 'has'>, peerId: string) {
    this.peerId = peerId
    this.#gets = new WantList(async (keys, signal, deliver) => {
      let i = 0
      for await (const { id, value } of exchange.fetch(peerId, keys, { signal })) {
        deliver(i, value ?? new BazilError(ErrorCode.NOT_FOUND, `peer ${peerId} does not hold ${hex(id)}`))
        i++
      }
    })
    this.#haves = new WantList(async (keys, signal, deliver) => {
      const held = await exchange.has(peerId, keys, { signal })
      held.forEach((value, i) => { deliver(i, value) })
    })
  }

  async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    return await this.#gets.want(key, options?.signal)
  }

  async has (key: Uint8Array, options?: KVOptions): Promise<boolean> {
    return await this.#haves.want(key, options?.signal)
  }

  async put (_key: Uint8Array, _value: Uint8Array, options?: KVOptions): Promise<void> {
    throwIfAborted(options?.signal)
    throw new BazilError(ErrorCode.NOT_SUPPORTED, `peer ${this.peerId} is a read-only store`)
  }
}

interface Want<T> {
  key: Uint8Array
  resolve: (value: T) => void
  reject: (err: unknown) => void
  settled: boolean
  /** Set once the want is sent; aborted when none of its wants is waiting any more. */
  batch?: { wants: Array<Want<T>>, controller: AbortController }
}

/** Runs one request for `keys`; calls `deliver(i, value or error)` for each key as answers come. */
type RunBatch<T> = (keys: Uint8Array[], signal: AbortSignal, deliver: (i: number, result: T | BazilError) => void) => Promise<void>

class WantList<T> {
  readonly #run: RunBatch<T>
  readonly #queue: Array<Want<T>> = []
  #inFlight = 0
  #scheduled = false

  constructor (run: RunBatch<T>) {
    this.#run = run
  }

  async want (key: Uint8Array, signal?: AbortSignal): Promise<T> {
    throwIfAborted(signal)
    // Checked here, not in the batch: one bad key must not fail the calls it would share a request with.
    if (key.byteLength < MIN_ID_BYTES || key.byteLength > MAX_ID_BYTES) {
      throw new BazilError(ErrorCode.INVALID, `key of ${key.byteLength} bytes (want ${MIN_ID_BYTES}–${MAX_ID_BYTES})`)
    }
    return await new Promise<T>((resolve, reject) => {
      const want: Want<T> = { key, resolve, reject, settled: false }
      const onAbort = (): void => {
        const queued = this.#queue.indexOf(want)
        if (queued !== -1) this.#queue.splice(queued, 1)
        settle(want, new BazilError(ErrorCode.ABORTED, 'peer store read aborted', { cause: signal?.reason }))
        if (want.batch?.wants.every(other => other.settled) === true) want.batch.controller.abort()
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      want.resolve = value => { signal?.removeEventListener('abort', onAbort); resolve(value) }
      want.reject = err => { signal?.removeEventListener('abort', onAbort); reject(err) }
      this.#queue.push(want)
      this.#schedule()
    })
  }

  /** Dispatches on the next microtask, so calls made in the same tick share a request. */
  #schedule (): void {
    if (this.#scheduled) return
    this.#scheduled = true
    queueMicrotask(() => {
      this.#scheduled = false
      this.#dispatch()
    })
  }

  #dispatch (): void {
    while (this.#inFlight < MAX_BATCHES_IN_FLIGHT && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_IDS_PER_REQUEST)
      this.#inFlight++
      void this.#runBatch(batch).finally(() => {
        this.#inFlight--
        this.#dispatch()
      })
    }
  }

  async #runBatch (batch: Array<Want<T>>): Promise<void> {
    const controller = new AbortController()
    for (const want of batch) want.batch = { wants: batch, controller }
    try {
      await this.#run(batch.map(want => want.key), controller.signal, (i, result) => {
        const want = batch[i]
        if (want !== undefined) settle(want, result)
      })
      for (const want of batch) {
        settle(want, new BazilError(ErrorCode.PROTOCOL, `peer gave no answer for ${hex(want.key)}`))
      }
    } catch (err) {
      for (const want of batch) settle(want, err)
    }
  }
}

function settle<T> (want: Want<T>, result: T | unknown): void {
  if (want.settled) return
  want.settled = true
  if (result instanceof Error) want.reject(result)
  else want.resolve(result as T)
}

function hex (key: Uint8Array | undefined): string {
  return key === undefined ? '?' : Buffer.from(key).toString('hex')
}
