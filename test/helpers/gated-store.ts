/**
 * A MemoryStore whose gets can be held: while `holding`, a get waits until `release()` or its
 * caller's signal (then it rejects ABORTED, like every real store). It counts gets started and
 * gets that ended by abort, so a test sees whether a cancellation reached the store.
 */
import { BazilError, ErrorCode } from '../../src/errors.ts'
import type { KVOptions } from '../../src/kv/kv.ts'
import { MemoryStore } from '../../src/kv/memory.ts'

export class GatedStore extends MemoryStore {
  holding = false
  gets = 0
  aborted = 0
  #waiting: Array<() => void> = []

  /** Lets every held get go on (and later ones too, until `holding` is set again). */
  release (): void {
    this.holding = false
    for (const go of this.#waiting.splice(0)) go()
  }

  override async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    this.gets++
    if (this.holding) {
      const signal = options?.signal
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          this.aborted++
          reject(new BazilError(ErrorCode.ABORTED, 'get aborted', { cause: signal?.reason }))
        }
        if (signal?.aborted === true) { onAbort(); return }
        signal?.addEventListener('abort', onAbort, { once: true })
        this.#waiting.push(() => { signal?.removeEventListener('abort', onAbort); resolve() })
      })
    }
    return await super.get(key, options)
  }
}
