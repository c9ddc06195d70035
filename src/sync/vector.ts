/**
 * Version vectors keyed by peer id, the building block of the vector time pairs of Cox &
 * Josephson, "File Synchronization with Vector Time Pairs" (MIT-CSAIL-TR-2005-014).
 *
 * A vector maps each peer to the last logical time (a positive integer from that peer's own
 * counter) it stands for; a peer that is absent stands for time 0. Vectors are immutable plain
 * data: a sorted array of `[peer, time]` pairs with no zero times and no repeated peers, so two
 * equal vectors are equal element by element and serialize to the same bytes.
 */
import { BazilError, ErrorCode } from '../errors.ts'

/** A replica's identity (in Bazil, its libp2p peer id as a string). */
export type PeerId = string

export type VectorEntry = readonly [peer: PeerId, time: number]

/** Sorted by peer id (code-unit order), times ≥ 1, each peer at most once. */
export type Vector = readonly VectorEntry[]

export type Ordering = 'equal' | 'before' | 'after' | 'concurrent'

export const EMPTY: Vector = Object.freeze([])

/** Builds a vector from `{ peer: time }` or pairs; zero times are dropped, order does not matter. */
export function vectorOf (entries: Readonly<Record<PeerId, number>> | Iterable<VectorEntry>): Vector {
  // Copied, so freezing the result never freezes the caller's arrays.
  const pairs: VectorEntry[] = (Symbol.iterator in entries
    ? [...(entries as Iterable<VectorEntry>)]
    : Object.entries(entries)).map(([peer, time]) => [peer, time])
  const seen = new Set<PeerId>()
  for (const [peer, time] of pairs) {
    if (typeof peer !== 'string' || peer === '') throw new BazilError(ErrorCode.INVALID, 'a peer id must be a non-empty string')
    checkTime(time)
    if (seen.has(peer)) throw new BazilError(ErrorCode.INVALID, `peer ${peer} appears twice in a vector`)
    seen.add(peer)
  }
  return freeze(pairs.filter(([, time]) => time > 0).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

/** The time `v` holds for `peer` (0 when absent). */
export function timeOf (v: Vector, peer: PeerId): number {
  return v.find(([p]) => p === peer)?.[1] ?? 0
}

/** `v` with `peer` at exactly `time` (0 removes it). */
export function withTime (v: Vector, peer: PeerId, time: number): Vector {
  checkTime(time)
  const rest = v.filter(([p]) => p !== peer)
  return time === 0 ? freeze(rest) : vectorOf([...rest, [peer, time]])
}

/** `a ≤ b`: every peer's time in `a` is at most its time in `b`. */
export function leq (a: Vector, b: Vector): boolean {
  let j = 0
  for (const [peer, time] of a) {
    while (j < b.length && (b[j] as VectorEntry)[0] < peer) j++
    const other = b[j]
    if (other === undefined || other[0] !== peer || other[1] < time) return false
  }
  return true
}

export function equals (a: Vector, b: Vector): boolean {
  return a.length === b.length && a.every(([peer, time], i) => b[i]?.[0] === peer && b[i]?.[1] === time)
}

export function compare (a: Vector, b: Vector): Ordering {
  const ab = leq(a, b)
  const ba = leq(b, a)
  return ab && ba ? 'equal' : ab ? 'before' : ba ? 'after' : 'concurrent'
}

/** Element-wise maximum (the least upper bound). */
export function merge (a: Vector, b: Vector): Vector {
  return combine(a, b, Math.max)
}

/** Element-wise minimum (the greatest lower bound); a peer missing from either side drops out. */
export function meet (a: Vector, b: Vector): Vector {
  return combine(a, b, Math.min)
}

/**
 * The entries of `v` that `base` does not already cover (time greater than base's). With
 * `merge(rebase(v, base), base)` equal to `merge(v, base)`, a child can store only this
 * difference from its directory's vector.
 */
export function rebase (v: Vector, base: Vector): Vector {
  return freeze(v.filter(([peer, time]) => time > timeOf(base, peer)))
}

/** Readable form for tests and logs: `{A:1 B:3}`. */
export function formatVector (v: Vector): string {
  return `{${v.map(([peer, time]) => `${peer}:${time}`).join(' ')}}`
}

function combine (a: Vector, b: Vector, pick: (x: number, y: number) => number): Vector {
  const out: VectorEntry[] = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    const x = a[i]
    const y = b[j]
    if (y === undefined || (x !== undefined && x[0] < y[0])) {
      out.push([(x as VectorEntry)[0], pick((x as VectorEntry)[1], 0)])
      i++
    } else if (x === undefined || y[0] < x[0]) {
      out.push([y[0], pick(0, y[1])])
      j++
    } else {
      out.push([x[0], pick(x[1], y[1])])
      i++
      j++
    }
  }
  return freeze(out.filter(([, time]) => time > 0))
}

function checkTime (time: number): void {
  if (!Number.isSafeInteger(time) || time < 0) {
    throw new BazilError(ErrorCode.INVALID, `a vector time must be a non-negative safe integer, got ${time}`)
  }
}

function freeze (entries: VectorEntry[]): Vector {
  for (const entry of entries) Object.freeze(entry)
  return Object.freeze(entries)
}
