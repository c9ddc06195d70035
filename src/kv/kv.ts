/**
 * The one storage interface. A `KV` maps opaque 32-byte keys (chunk ids) to opaque values
 * (sealed chunks). Everything else — encryption, caching, the fan-out, retries, remote stores —
 * is a `KV` wrapping other `KV`s. Optional capabilities are separate interfaces so a backend
 * implements only what it really can.
 *
 * Contract (checked by test/compliance/kv.suite.ts):
 * - `get` of an absent key rejects with BazilError NOT_FOUND. What `get` resolves to belongs to
 *   the caller: a store never keeps, reuses or writes it later (the CAS may transfer it to a
 *   worker thread, which detaches it).
 * - `put` is idempotent: putting a key again (with the same value, as content addressing
 *   guarantees) succeeds. A reader never sees a partially written value.
 * - Every method honours `options.signal` and rejects with ABORTED once it fires.
 */

export interface KVOptions {
  signal?: AbortSignal
}

export interface KVPutOptions extends KVOptions {
  /**
   * Resolve once the value is visible (readable by `get`, surviving a crash of this process),
   * before it is durable against a power cut; durability follows in the background and
   * `flush()` waits for it. Stores without `KVFlush` ignore it (their puts are durable).
   */
  lazy?: boolean
}

export interface KV {
  get: (key: Uint8Array, options?: KVOptions) => Promise<Uint8Array>
  put: (key: Uint8Array, value: Uint8Array, options?: KVPutOptions) => Promise<void>
}

export interface KVFlush {
  /** Resolves once every put made so far (lazy ones too) is durable. */
  flush: (options?: KVOptions) => Promise<void>
}

export interface KVHas {
  has: (key: Uint8Array, options?: KVOptions) => Promise<boolean>
}

export interface KVDelete {
  /** Deleting an absent key is not an error. */
  delete: (key: Uint8Array, options?: KVOptions) => Promise<void>
}

export interface KVKeys {
  keys: (options?: KVOptions) => AsyncIterable<Uint8Array>
}

export interface KVStat {
  /** Number of objects and bytes held (as stored, i.e. sealed sizes). */
  stat: (options?: KVOptions) => Promise<{ objects: number, bytes: number }>
}

export type FullKV = KV & KVHas & KVDelete & KVKeys & KVStat

type Capabilities = KVHas & KVDelete & KVKeys & KVStat & KVFlush

export function hasCapability<K extends keyof Capabilities> (
  kv: KV, name: K
): kv is KV & Pick<Capabilities, K> {
  return typeof (kv as unknown as Record<string, unknown>)[name] === 'function'
}
