/**
 * Deterministic encodings of a clock (vector time pairs, Cox & Josephson, MIT-CSAIL-TR-2005-014)
 * for the level database and the wire. Equal clocks encode to equal bytes, and a decoder accepts
 * only the one canonical encoding of a clock, so bytes can be compared and hashed.
 *
 * Binary, version 1 (all integers unsigned LEB128 varints):
 *   0x01
 *   peerCount, then each peer id as byteLength ‖ UTF-8, strictly ascending (code-unit order),
 *     exactly the peers the three vectors use
 *   then sync, mod, create: each entryCount, then (peerIndex, time) with ascending indexes
 * A peer id (a libp2p peer id is ~52 bytes) is written once however many vectors name it.
 *
 * JSON: `{"sync":[[peer,time],...],"mod":[...],"create":[...]}` with entries in vector order.
 *
 * Bytes or JSON that are not a canonical clock are `CORRUPT` (the protocol layer maps that to
 * its own status).
 */
import { BazilError, ErrorCode } from '../errors.ts'
import type { Clock } from './clock.ts'
import { vectorOf } from './vector.ts'
import type { PeerId, Vector, VectorEntry } from './vector.ts'

export const CLOCK_FORMAT_VERSION = 1

/** Upper bound on peers in one clock: a person's devices, with a wide margin. */
export const MAX_CLOCK_PEERS = 4096
export const MAX_PEER_ID_BYTES = 256

export interface ClockJSON {
  sync: Array<[PeerId, number]>
  mod: Array<[PeerId, number]>
  create: Array<[PeerId, number]>
}

const utf8 = new TextEncoder()
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

export function encodeClock (clock: Clock): Uint8Array {
  const peers = [...new Set([...clock.sync, ...clock.mod, ...clock.create].map(([peer]) => peer))].sort(byCodeUnit)
  const index = new Map(peers.map((peer, i) => [peer, i]))
  const out: number[] = [CLOCK_FORMAT_VERSION]
  writeUvarint(out, peers.length)
  for (const peer of peers) {
    const bytes = utf8.encode(peer)
    writeUvarint(out, bytes.length)
    for (const b of bytes) out.push(b)
  }
  for (const vector of [clock.sync, clock.mod, clock.create]) {
    writeUvarint(out, vector.length)
    for (const [peer, time] of vector) {
      writeUvarint(out, index.get(peer) as number)
      writeUvarint(out, time)
    }
  }
  return Uint8Array.from(out)
}

export function decodeClock (bytes: Uint8Array): Clock {
  const reader = { bytes, at: 0 }
  if (bytes[0] !== CLOCK_FORMAT_VERSION) throw corrupt(`unknown clock format ${bytes[0] ?? '(empty)'}`)
  reader.at = 1
  const peerCount = readUvarint(reader)
  if (peerCount > MAX_CLOCK_PEERS) throw corrupt(`clock names ${peerCount} peers`)
  const peers: PeerId[] = []
  for (let i = 0; i < peerCount; i++) {
    const length = readUvarint(reader)
    if (length === 0 || length > MAX_PEER_ID_BYTES || reader.at + length > bytes.length) throw corrupt('bad peer id length')
    let peer: string
    try {
      peer = strictUtf8.decode(bytes.subarray(reader.at, reader.at + length))
    } catch (err) {
      throw corrupt('peer id is not UTF-8', err)
    }
    reader.at += length
    const previous = peers[peers.length - 1]
    if (previous !== undefined && !(previous < peer)) throw corrupt('peer ids are not strictly ascending')
    peers.push(peer)
  }
  const used = new Set<number>()
  const readVector = (): Vector => {
    const count = readUvarint(reader)
    if (count > peers.length) throw corrupt('vector longer than its peer table')
    const entries: VectorEntry[] = []
    let last = -1
    for (let i = 0; i < count; i++) {
      const at = readUvarint(reader)
      const time = readUvarint(reader)
      const peer = peers[at]
      if (peer === undefined || at <= last) throw corrupt('vector peer indexes are not ascending')
      if (time === 0) throw corrupt('zero time in a vector')
      last = at
      used.add(at)
      entries.push([peer, time])
    }
    return vectorOf(entries)
  }
  const sync = readVector()
  const mod = readVector()
  const create = readVector()
  if (reader.at !== bytes.length) throw corrupt('trailing bytes after a clock')
  if (used.size !== peers.length) throw corrupt('peer table names a peer no vector uses')
  return checkShape({ sync, mod, create })
}

export function clockToJSON (clock: Clock): ClockJSON {
  const pairs = (v: Vector): Array<[PeerId, number]> => v.map(([peer, time]) => [peer, time])
  return { sync: pairs(clock.sync), mod: pairs(clock.mod), create: pairs(clock.create) }
}

export function clockFromJSON (value: unknown): Clock {
  if (typeof value !== 'object' || value === null) throw corrupt('a clock is an object')
  const record = value as Record<string, unknown>
  const keys = Object.keys(record).sort()
  if (keys.join(',') !== 'create,mod,sync') throw corrupt(`clock fields: ${keys.join(',')}`)
  const vector = (field: string): Vector => {
    const entries = record[field]
    if (!Array.isArray(entries)) throw corrupt(`${field} is not an array`)
    let previous: string | undefined
    for (const entry of entries as unknown[]) {
      if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== 'string' || entry[0] === '' ||
          !Number.isSafeInteger(entry[1]) || (entry[1] as number) < 1) {
        throw corrupt(`${field} entry is not [peer, time ≥ 1]`)
      }
      if (previous !== undefined && !(previous < entry[0])) throw corrupt(`${field} peers are not strictly ascending`)
      previous = entry[0]
    }
    return vectorOf(entries as VectorEntry[])
  }
  return checkShape({ sync: vector('sync'), mod: vector('mod'), create: vector('create') })
}

/** A tombstone has neither mod nor create; a live entry has both. */
function checkShape (clock: Clock): Clock {
  if ((clock.mod.length === 0) !== (clock.create.length === 0)) {
    throw corrupt('a clock has a modification time without a creation time, or the reverse')
  }
  return Object.freeze(clock)
}

function writeUvarint (out: number[], value: number): void {
  // Numbers up to 2^53: divide instead of shifting (shifts are 32-bit).
  let rest = value
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80)
    rest = Math.floor(rest / 0x80)
  }
  out.push(rest)
}

function readUvarint (reader: { bytes: Uint8Array, at: number }): number {
  let value = 0
  let scale = 1
  for (let i = 0; i < 8; i++) {
    const byte = reader.bytes[reader.at++]
    if (byte === undefined) throw corrupt('clock ends inside a number')
    value += (byte & 0x7f) * scale
    if ((byte & 0x80) === 0) {
      // Canonical: no redundant trailing zero group, and within the safe integers.
      if (byte === 0 && i > 0) throw corrupt('non-canonical number in a clock')
      if (!Number.isSafeInteger(value)) throw corrupt('number in a clock is too large')
      return value
    }
    scale *= 0x80
  }
  throw corrupt('number in a clock is too long')
}

function byCodeUnit (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function corrupt (message: string, cause?: unknown): BazilError {
  return new BazilError(ErrorCode.CORRUPT, message, { cause })
}
