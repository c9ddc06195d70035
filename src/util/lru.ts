/**
 * A size-bounded LRU map (Map keeps insertion order; a hit re-inserts). `onDrop` sees every value
 * that leaves: evicted, replaced, deleted, cleared, or refused for being larger than the whole cache.
 */
export class LruCache<K, V> {
  private readonly map = new Map<K, V>()
  private size = 0

  constructor (
    readonly maxSize: number,
    private readonly sizeOf: (value: V) => number = () => 1,
    private readonly onDrop?: (value: V) => void
  ) {}

  get (key: K): V | undefined {
    const value = this.map.get(key)
    if (value === undefined) return undefined
    this.map.delete(key)
    this.map.set(key, value)
    return value
  }

  set (key: K, value: V): void {
    const old = this.map.get(key)
    if (old !== undefined) {
      this.map.delete(key)
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
    for (const [k, v] of this.map) {
      if (this.size <= this.maxSize) break
      this.map.delete(k)
      this.size -= this.sizeOf(v)
      this.onDrop?.(v)
    }
  }

  delete (key: K): void {
    const old = this.map.get(key)
    if (old === undefined) return
    this.map.delete(key)
    this.size -= this.sizeOf(old)
    this.onDrop?.(old)
  }

  /** Drops the least recently used value that `pick` accepts; false when none does. */
  dropOldest (pick: (value: V) => boolean): boolean {
    for (const [k, v] of this.map) {
      if (!pick(v)) continue
      this.delete(k)
      return true
    }
    return false
  }

  clear (): void {
    const values = [...this.map.values()]
    this.map.clear()
    this.size = 0
    if (this.onDrop !== undefined) for (const v of values) this.onDrop(v)
  }
}
