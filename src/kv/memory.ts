/**
 * An in-memory `KV` with every capability, for unit tests of the layers above the stores.
 * Values are copied on the way in and out (`new Uint8Array(v)`, not `Buffer#slice`, which
 * shares memory), so callers can never alias stored bytes.
 * Keys are compared by their hex form.
 */
import { BazilError, ErrorCode, throwIfAborted } from '../errors.ts'
import type { FullKV, KVOptions } from './kv.ts'

export class MemoryStore implements FullKV {
  readonly #values = new Map<string, Uint8Array>()
  #bytes = 0

  async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    throwIfAborted(options?.signal)
    const value = this.#values.get(toHex(key))
    if (value === undefined) throw new BazilError(ErrorCode.NOT_FOUND, `no object ${toHex(key)}`)
    return new Uint8Array(value)
  }

  async put (key: Uint8Array, value: Uint8Array, options?: KVOptions): Promise<void> {
    throwIfAborted(options?.signal)
    const hex = toHex(key)
    if (this.#values.has(hex)) return
    this.#values.set(hex, new Uint8Array(value))
    this.#bytes += value.byteLength
  }

  async has (key: Uint8Array, options?: KVOptions): Promise<boolean> {
    throwIfAborted(options?.signal)
    return this.#values.has(toHex(key))
  }

  async delete (key: Uint8Array, options?: KVOptions): Promise<void> {
    throwIfAborted(options?.signal)
    const hex = toHex(key)
    const value = this.#values.get(hex)
    if (value === undefined) return
    this.#values.delete(hex)
    this.#bytes -= value.byteLength
  }

  async * keys (options?: KVOptions): AsyncIterable<Uint8Array> {
    // Snapshot first so deletes during iteration are safe.
    for (const hex of [...this.#values.keys()]) {
      throwIfAborted(options?.signal)
      yield Buffer.from(hex, 'hex')
    }
  }

  async stat (options?: KVOptions): Promise<{ objects: number, bytes: number }> {
    throwIfAborted(options?.signal)
    return { objects: this.#values.size, bytes: this.#bytes }
  }
}

function toHex (key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex')
}
