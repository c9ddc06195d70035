/**
 * A size-bounded LRU map (Map keeps insertion order; a hit re-inserts). `onDrop` sees every value
 * that leaves: evicted, replaced, deleted, cleared, or refused for being larger than the whole cache.
 * A value can be demoted (`demote`): it then goes before every other, for eviction and for
 * `dropOldest`, until it is used again — a sequential reader's finished chunks go first and the
 * read-ahead it has not reached yet stays.
 */
export class LruCache<K, V> {
  private readonly map = new Map<K, V>()
  /** Demoted values, oldest demotion first; evicted before anything in `map`. */
  private readonly cold = new Map<K, V>()
  private size = 0

  constructor (
    readonly maxSize: number,
    private readonly sizeOf: (value: V) => number = () => 1,
    private readonly onDrop?: (value: V) => void
  ) {}

  get (key: K): V | undefined {
    let value = this.map.get(key)
    if (value !== undefined) this.map.delete(key)
    else {
      value = this.cold.get(key)
      if (value === undefined) return undefined
      this.cold.delete(key)
    }
    this.map.set(key, value)
    return value
  }

  set (key: K, value: V): void {
    const old = this.take(key)
    if (old !== undefined) {
      this.size -= this.sizeOf(old)
      if (old !== value) this.onDrop?.(old)
    }
    const size = this.sizeOf(value)
    if (size > this.maxSize) {
      this.onDrop?.(value)
      return
    }
    this.map.set(key, value)
    this.size += size
    while (this.size > this.maxSize && this.dropOldest(() => true));
  }

  /** Moves `key` to the front of the eviction order (no-op when absent). */
  demote (key: K): void {
    const value = this.map.get(key)
    if (value === undefined) return
    this.map.delete(key)
    this.cold.set(key, value)
  }

  delete (key: K): void {
    const old = this.take(key)
    if (old === undefined) return
    this.size -= this.sizeOf(old)
    this.onDrop?.(old)
  }

  /** Drops the first value in eviction order (demoted, then least recently used) that `pick` accepts; false when none does. */
  dropOldest (pick: (value: V) => boolean): boolean {
    for (const tier of [this.cold, this.map]) {
      for (const [k, v] of tier) {
        if (!pick(v)) continue
        this.delete(k)
        return true
      }
    }
    return false
  }

  clear (): void {
    const values = [...this.cold.values(), ...this.map.values()]
    this.map.clear()
    this.cold.clear()
    this.size = 0
    if (this.onDrop !== undefined) for (const v of values) this.onDrop(v)
  }

  /** Removes `key` from whichever tier holds it, without accounting. */
  private take (key: K): V | undefined {
    const value = this.map.get(key)
    if (value !== undefined) {
      this.map.delete(key)
      return value
    }
    const cold = this.cold.get(key)
    if (cold !== undefined) this.cold.delete(key)
    return cold
  }
}
