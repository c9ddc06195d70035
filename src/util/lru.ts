/** A size-bounded LRU map (Map keeps insertion order; a hit re-inserts). */
export class LruCache<K, V> {
  private readonly map = new Map<K, V>()
  private size = 0

  constructor (private readonly maxSize: number, private readonly sizeOf: (value: V) => number = () => 1) {}

  get (key: K): V | undefined {
    const value = this.map.get(key)
    if (value === undefined) return undefined
    this.map.delete(key)
    this.map.set(key, value)
    return value
  }

  set (key: K, value: V): void {
    this.delete(key)
    const size = this.sizeOf(value)
    if (size > this.maxSize) return
    this.map.set(key, value)
    this.size += size
    for (const [k, v] of this.map) {
      if (this.size <= this.maxSize) break
      this.map.delete(k)
      this.size -= this.sizeOf(v)
    }
  }

  delete (key: K): void {
    const old = this.map.get(key)
    if (old === undefined) return
    this.map.delete(key)
    this.size -= this.sizeOf(old)
  }

  clear (): void {
    this.map.clear()
    this.size = 0
  }
}
