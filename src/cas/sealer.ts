/**
 * Hashing and sealing, and opening, on a worker thread. On a 2-core machine the main thread
 * serves FUSE and cuts chunks while the worker computes HMAC ids and AES-GCM seals, so a long
 * write keeps both cores busy; a long read likewise leaves decrypting and re-hashing to it.
 * Chunks are transferred (not copied) in both directions.
 */
import { Worker } from 'node:worker_threads'
import { BazilError, ErrorCode } from '../errors.ts'
import type { ContentKeys } from './keys.ts'
import { SlotPool } from './slots.ts'
import type { SlotRef } from './slots.ts'

interface Pending {
  resolve: (value: Reply) => void
  reject: (err: unknown) => void
}

interface Reply { seq: number, id?: Uint8Array, sealed?: Uint8Array, plain?: Uint8Array, length?: number, error?: string, code?: string }

export class Sealer {
  /** Memory shared with the worker for chunks opened there (see slots.ts). */
  readonly slots: SlotPool
  private readonly worker: Worker
  private readonly pending = new Map<number, Pending>()
  private seq = 0
  private closed = false

  constructor (keys: ContentKeys, slots = new SlotPool()) {
    this.slots = slots
    this.worker = new Worker(new URL('./seal-worker-entry.mjs', import.meta.url), {
      workerData: { keys: { idKey: keys.idKey, encKey: keys.encKey }, slots: slots.memory }
    })
    this.worker.unref()
    this.worker.on('message', (msg: Reply) => {
      const p = this.pending.get(msg.seq)
      if (p === undefined) return
      this.pending.delete(msg.seq)
      if (msg.error !== undefined) {
        // A chunk that fails verification stays CORRUPT; anything else is the worker's IO failure.
        const code = msg.code === ErrorCode.CORRUPT ? ErrorCode.CORRUPT : ErrorCode.IO
        p.reject(new BazilError(code, code === ErrorCode.CORRUPT ? msg.error : `seal worker: ${msg.error}`))
      } else {
        p.resolve(msg)
      }
    })
    this.worker.on('error', err => { this.failAll(err) })
    this.worker.on('exit', () => { this.failAll(new Error('seal worker exited')) })
  }

  /** Hashes and seals `plain`, which must own its ArrayBuffer (it is transferred away). */
  async seal (plain: Uint8Array): Promise<{ id: Uint8Array, sealed: Uint8Array }> {
    const reply = await this.ask(seq => { this.worker.postMessage({ seq, plain }, [plain.buffer as ArrayBuffer]) })
    if (reply.id === undefined || reply.sealed === undefined) throw new BazilError(ErrorCode.IO, 'seal worker: no result')
    return { id: reply.id, sealed: reply.sealed }
  }

  /**
   * Opens and verifies `sealed` as the object `id` (see seal.ts `open`): CORRUPT unless it is.
   * `sealed` is transferred away (detached) when it is a view of its whole ArrayBuffer, else
   * (or with `copy`, when the caller still needs it) copied.
   */
  async open (id: Uint8Array, sealed: Uint8Array, options: { copy?: boolean } = {}): Promise<Uint8Array> {
    const whole = options.copy !== true && sealed.buffer instanceof ArrayBuffer && sealed.byteOffset === 0 && sealed.byteLength === sealed.buffer.byteLength
    const reply = await this.ask(seq => { this.worker.postMessage({ seq, id, sealed }, whole ? [sealed.buffer as ArrayBuffer] : []) })
    if (reply.plain === undefined) throw new BazilError(ErrorCode.IO, 'seal worker: no result')
    return reply.plain
  }

  /**
   * Opens and verifies the `length` sealed bytes at the start of `slot` as the object `id`; the
   * plaintext replaces them there. Resolves to its length. The slot must not be released before
   * this settles (the worker writes into it until then).
   */
  async openInSlot (id: Uint8Array, slot: SlotRef, length: number): Promise<number> {
    const reply = await this.ask(seq => { this.worker.postMessage({ seq, id, cls: slot.cls, index: slot.index, length }) })
    if (reply.length === undefined) throw new BazilError(ErrorCode.IO, 'seal worker: no result')
    return reply.length
  }

  /**
   * Opens and verifies `sealed`, which must own its whole ArrayBuffer (it is transferred away),
   * as the object `id`, writing the plaintext into `slot`. Resolves to its length. The slot
   * must not be released before this settles. Transferring, rather than copying into the slot,
   * lets go of `sealed` here at once (see DECISIONS.md, "Shared slots for chunks").
   */
  async openToSlot (id: Uint8Array, sealed: Uint8Array, slot: SlotRef): Promise<number> {
    const reply = await this.ask(seq => {
      this.worker.postMessage({ seq, id, sealed, cls: slot.cls, index: slot.index, length: sealed.byteLength }, [sealed.buffer as ArrayBuffer])
    })
    if (reply.length === undefined) throw new BazilError(ErrorCode.IO, 'seal worker: no result')
    return reply.length
  }

  private async ask (send: (seq: number) => void): Promise<Reply> {
    if (this.closed) throw new BazilError(ErrorCode.CLOSED, 'sealer is closed')
    const seq = this.seq++
    return await new Promise<Reply>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject })
      if (this.pending.size === 1) this.worker.ref()
      send(seq)
    }).finally(() => { if (this.pending.size === 0) this.worker.unref() })
  }

  async close (): Promise<void> {
    this.closed = true
    await this.worker.terminate()
  }

  private failAll (err: unknown): void {
    this.closed = true
    for (const p of this.pending.values()) p.reject(new BazilError(ErrorCode.IO, 'seal worker failed', { cause: err }))
    this.pending.clear()
  }
}
