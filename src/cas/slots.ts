/**
 * Shared memory for chunks on their way through the seal worker and in the cache of opened
 * chunks. A 1 GiB read allocated every chunk three times as fresh ArrayBuffers (the sealed bytes,
 * the plaintext the worker made, the plaintext arriving back here), and V8 starts a full
 * garbage collection whenever 64 MiB of new ArrayBuffer memory has appeared since the last one:
 * about 55 collections in that read, a third of its CPU. Slots are carved once out of a few
 * SharedArrayBuffers that the worker shares: the sealed bytes are read or copied into a slot,
 * the worker writes the plaintext back into the same slot, and the slot stays in the cache until
 * it is evicted. See DECISIONS.md, "Shared slots for chunks".
 *
 * Ownership: a slot taken here belongs to its taker until `release`. Whoever writes into it
 * (a file read, the worker) must have finished before it is released; after release its
 * generation changes, which is how a holder of a `SlotRef` finds out it is stale.
 */

/** One size class: `count` slots of `size` bytes in one SharedArrayBuffer. */
export interface SlotClass { size: number, count: number }

/** What the worker needs to find a slot: its class's memory and its place in it. */
export interface SlotMemory { buffers: SharedArrayBuffer[], sizes: number[] }

export interface SlotRef {
  readonly cls: number
  readonly index: number
  /** The generation when taken; `SlotPool.live` says whether it still is. */
  readonly gen: number
  /** The whole slot. */
  readonly bytes: Uint8Array
}

/** Room for the largest chunk (1 MiB) sealed, and for chunks from 128 KiB (opened on the worker). */
const MARGIN = 4096
export const DEFAULT_SLOT_CLASSES: SlotClass[] = [
  { size: 256 * 1024 + MARGIN, count: 48 },
  { size: 512 * 1024 + MARGIN, count: 48 },
  { size: 1024 * 1024 + MARGIN, count: 32 }
]

export class SlotPool {
  readonly memory: SlotMemory
  private readonly free: number[][]
  private readonly gens: Uint32Array[]
  private readonly views: Uint8Array[]
  /** Slots taken and not released. */
  taken = 0
  /** Takes that found no slot (the caller then allocates memory of its own). */
  misses = 0

  constructor (readonly classes: SlotClass[] = DEFAULT_SLOT_CLASSES) {
    // Ascending sizes, so `take` finds the smallest class that fits first.
    const sorted = [...classes].sort((a, b) => a.size - b.size)
    this.memory = { buffers: sorted.map(c => new SharedArrayBuffer(c.size * c.count)), sizes: sorted.map(c => c.size) }
    this.free = sorted.map(c => Array.from({ length: c.count }, (_, i) => c.count - 1 - i))
    this.gens = sorted.map(c => new Uint32Array(c.count))
    this.views = this.memory.buffers.map(b => new Uint8Array(b))
    this.classes = sorted
  }

  /** A free slot of at least `size` bytes, or undefined when none is free. */
  take (size: number): SlotRef | undefined {
    for (let cls = 0; cls < this.classes.length; cls++) {
      const c = this.classes[cls] as SlotClass
      if (c.size < size) continue
      const index = (this.free[cls] as number[]).pop()
      if (index === undefined) continue
      this.taken++
      const gen = (this.gens[cls] as Uint32Array)[index] as number
      return { cls, index, gen, bytes: (this.views[cls] as Uint8Array).subarray(index * c.size, (index + 1) * c.size) }
    }
    this.misses++
    return undefined
  }

  /** Whether `ref` still holds what its taker put there (not released since). */
  live (ref: SlotRef): boolean {
    return (this.gens[ref.cls] as Uint32Array)[ref.index] === ref.gen
  }

  /** Gives a slot back; a second release of the same ref is ignored. */
  release (ref: SlotRef): void {
    if (!this.live(ref)) return
    const gens = this.gens[ref.cls] as Uint32Array
    gens[ref.index] = ((gens[ref.index] as number) + 1) >>> 0
    ;(this.free[ref.cls] as number[]).push(ref.index)
    this.taken--
  }
}

/** The worker's view of slot `index` of class `cls` (see SlotPool.memory). */
export function slotBytes (memory: SlotMemory, cls: number, index: number): Uint8Array {
  const size = memory.sizes[cls] as number
  return new Uint8Array(memory.buffers[cls] as SharedArrayBuffer, index * size, size)
}
