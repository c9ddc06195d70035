/**
 * Hashing and sealing on a worker thread. On a 2-core machine the main thread serves FUSE and
 * cuts chunks while the worker computes HMAC ids and AES-GCM seals, so a long write keeps both
 * cores busy. Chunks are transferred (not copied) in both directions.
 */
import { Worker } from 'node:worker_threads'
import { BazilError, ErrorCode } from '../errors.ts'
import type { ContentKeys } from './keys.ts'

interface Pending {
  resolve: (value: { id: Uint8Array, sealed: Uint8Array }) => void
  reject: (err: unknown) => void
}

export class Sealer {
  private readonly worker: Worker
  private readonly pending = new Map<number, Pending>()
  private seq = 0
  private closed = false

  constructor (keys: ContentKeys) {
    this.worker = new Worker(new URL('./seal-worker-entry.mjs', import.meta.url), {
      workerData: { idKey: keys.idKey, encKey: keys.encKey }
    })
    this.worker.unref()
    this.worker.on('message', (msg: { seq: number, id?: Uint8Array, sealed?: Uint8Array, error?: string }) => {
      const p = this.pending.get(msg.seq)
      if (p === undefined) return
      this.pending.delete(msg.seq)
      if (msg.error !== undefined || msg.id === undefined || msg.sealed === undefined) {
        p.reject(new BazilError(ErrorCode.IO, `sealing failed: ${msg.error ?? 'no result'}`))
      } else {
        p.resolve({ id: msg.id, sealed: msg.sealed })
      }
    })
    this.worker.on('error', err => { this.failAll(err) })
    this.worker.on('exit', () => { this.failAll(new Error('seal worker exited')) })
  }

  /** Hashes and seals `plain`, which must own its ArrayBuffer (it is transferred away). */
  async seal (plain: Uint8Array): Promise<{ id: Uint8Array, sealed: Uint8Array }> {
    if (this.closed) throw new BazilError(ErrorCode.CLOSED, 'sealer is closed')
    const seq = this.seq++
    return await new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject })
      if (this.pending.size === 1) this.worker.ref()
      this.worker.postMessage({ seq, plain }, [plain.buffer as ArrayBuffer])
    }).finally(() => { if (this.pending.size === 0) this.worker.unref() }) as { id: Uint8Array, sealed: Uint8Array }
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
