/**
 * What sync says about one entry: its replicated state (type, place in the tree by the stable
 * ids of its parent, attributes, content root) with its clock, or a tombstone with only its
 * clock. This is the body of a change-log record on the wire (/bazil/changes/1.0.0) and the
 * unit the engine decides on (engine.ts).
 *
 * Only what should travel is here: a directory's size, nlink and mtime, and every atime and
 * ctime, are local (a directory's mtime changes with every child; syncing it would make
 * concurrent creations in one directory conflict). Hard links travel as one name (the entry's
 * place); other names of the same entry stay local.
 */
import { createHash } from 'node:crypto'
import { BazilError, ErrorCode } from '../errors.ts'
import type { Clock } from './clock.ts'
import { clockFromJSON, clockToJSON } from './codec.ts'
import type { ClockJSON } from './codec.ts'
import type { PeerId, Vector } from './vector.ts'

/** The stable id the root directory has on every device (its local id differs). */
export const ROOT_ID = 'root'
export const RECORD_FORMAT_VERSION = 1
/** A record's encoded size bound (the protocol's MAX_RECORD_BYTES). */
export const MAX_RECORD_BYTES = 1024 * 1024
const MAX_NAME_BYTES = 255
const MAX_TARGET_BYTES = 4096

export type EntryType = 'file' | 'dir' | 'symlink'

export interface ContentRoot { root: string, depth: number }

export interface EntryData {
  type: EntryType
  /** Stable id of the parent directory (ROOT_ID at the top). */
  parent: string
  name: string
  /** Permission bits (no type bits). */
  perm: number
  uid: number
  gid: number
  /** Files and symlinks only (0 for directories). */
  mtimeMs: number
  size: number
  target?: string
  content?: ContentRoot | null
  /** name → base64 value */
  xattrs?: Record<string, string>
  /** Set on a conflict copy: the id of the entry whose other version this is. */
  conflictOf?: string
}

export interface EntryRecord {
  id: string
  clock: Clock
  /** Absent for a tombstone. */
  data?: EntryData
}

/** Whether two states are the same for sync (so concurrent changes to them do not conflict). */
export function sameData (a: EntryData | undefined, b: EntryData | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return canonical(a) === canonical(b)
}

/** Same content and attributes, wherever the two are placed. */
export function sameContent (a: EntryData, b: EntryData): boolean {
  return canonical({ ...a, parent: '', name: '', conflictOf: undefined }) === canonical({ ...b, parent: '', name: '', conflictOf: undefined })
}

export function encodeRecord (record: EntryRecord): Uint8Array {
  const json = { v: RECORD_FORMAT_VERSION, id: record.id, clock: clockToJSON(record.clock), ...(record.data !== undefined ? { data: sorted(record.data) } : {}) }
  const bytes = Buffer.from(JSON.stringify(json))
  if (bytes.byteLength > MAX_RECORD_BYTES) throw new BazilError(ErrorCode.TOO_BIG, `the state of entry ${record.id} is ${bytes.byteLength} bytes (at most ${MAX_RECORD_BYTES})`)
  return bytes
}

/** Decodes and checks a record from a peer: PROTOCOL for anything malformed. */
export function decodeRecord (bytes: Uint8Array): EntryRecord {
  if (bytes.byteLength > MAX_RECORD_BYTES) throw bad(`a record of ${bytes.byteLength} bytes`)
  let json: { v?: unknown, id?: unknown, clock?: unknown, data?: unknown }
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8')) as typeof json
  } catch (err) {
    throw bad(`not JSON: ${(err as Error).message}`)
  }
  if (typeof json !== 'object' || json === null || json.v !== RECORD_FORMAT_VERSION) throw bad('unknown record format')
  if (typeof json.id !== 'string' || !/^([0-9a-f]{32}|root)$/.test(json.id)) throw bad('bad entry id')
  let clock: Clock
  try {
    clock = clockFromJSON(json.clock as ClockJSON)
  } catch (err) {
    throw bad(`bad clock: ${(err as Error).message}`)
  }
  const live = clock.create.length > 0
  if (live !== (json.data !== undefined)) throw bad(live ? 'a live entry without data' : 'a tombstone with data')
  const record: EntryRecord = { id: json.id, clock }
  if (json.data !== undefined) record.data = checkData(json.data, json.id)
  return record
}

function checkData (value: unknown, id: string): EntryData {
  if (typeof value !== 'object' || value === null) throw bad('data is not an object')
  const d = value as Record<string, unknown>
  const type = d.type
  if (type !== 'file' && type !== 'dir' && type !== 'symlink') throw bad('bad type')
  if (typeof d.parent !== 'string' || !/^([0-9a-f]{32}|root)$/.test(d.parent) || d.parent === id) throw bad('bad parent')
  if (id === ROOT_ID) throw bad('the root is not synced as an entry')
  if (typeof d.name !== 'string' || d.name === '' || d.name === '.' || d.name === '..' || d.name.includes('/') || d.name.includes('\0') ||
    Buffer.byteLength(d.name) > MAX_NAME_BYTES) throw bad('bad name')
  for (const field of ['perm', 'uid', 'gid', 'mtimeMs', 'size'] as const) {
    if (typeof d[field] !== 'number' || !Number.isSafeInteger(d[field]) || (d[field] as number) < 0) throw bad(`bad ${field}`)
  }
  if ((d.perm as number) > 0o7777) throw bad('bad perm')
  const data: EntryData = { type, parent: d.parent, name: d.name, perm: d.perm as number, uid: d.uid as number, gid: d.gid as number, mtimeMs: d.mtimeMs as number, size: d.size as number }
  if (type === 'symlink') {
    if (typeof d.target !== 'string' || d.target === '' || Buffer.byteLength(d.target) > MAX_TARGET_BYTES) throw bad('bad symlink target')
    data.target = d.target
  } else if (d.target !== undefined) throw bad('a target on a non-symlink')
  if (d.content !== undefined && d.content !== null) {
    const c = d.content as Record<string, unknown>
    if (type !== 'file' || typeof c !== 'object' || typeof c.root !== 'string' || !/^[0-9a-f]{64}$/.test(c.root) ||
      typeof c.depth !== 'number' || !Number.isSafeInteger(c.depth) || c.depth < 0 || c.depth > 8) throw bad('bad content root')
    data.content = { root: c.root, depth: c.depth }
  } else if (d.content === null) data.content = null
  if (d.xattrs !== undefined) {
    if (typeof d.xattrs !== 'object' || d.xattrs === null) throw bad('bad xattrs')
    for (const [name, v] of Object.entries(d.xattrs)) {
      if (name === '' || typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw bad('bad xattr')
    }
    data.xattrs = { ...(d.xattrs as Record<string, string>) }
  }
  if (d.conflictOf !== undefined) {
    if (typeof d.conflictOf !== 'string' || !/^[0-9a-f]{32}$/.test(d.conflictOf)) throw bad('bad conflictOf')
    data.conflictOf = d.conflictOf
  }
  return data
}

/**
 * Of two concurrent versions, the one every replica keeps under the entry's name: the later
 * modification (its newest vector entry, then the peer id), then the data itself. The other
 * becomes a conflict copy. A total order, so three-way conflicts end the same everywhere.
 */
export function laterVersion (a: { clock: Clock, data: EntryData }, b: { clock: Clock, data: EntryData }): 'a' | 'b' {
  const newest = (v: Vector): [number, PeerId] => v.reduce<[number, PeerId]>((best, [peer, time]) =>
    time > best[0] || (time === best[0] && peer > best[1]) ? [time, peer] : best, [0, ''])
  const [ta, pa] = newest(a.clock.mod)
  const [tb, pb] = newest(b.clock.mod)
  if (ta !== tb) return ta > tb ? 'a' : 'b'
  if (pa !== pb) return pa > pb ? 'a' : 'b'
  return canonical(a.data) >= canonical(b.data) ? 'a' : 'b'
}

/** The id of the conflict copy holding `loser`'s version of entry `id`: the same on every replica. */
export function conflictCopyId (id: string, loser: Clock): string {
  return createHash('sha256').update(`bazil conflict copy\0${id}\0${JSON.stringify(clockToJSON(loser).mod)}`).digest('hex').slice(0, 32)
}

/**
 * The name of a conflict copy, next to the original: `report.sync-conflict-20261204-013000-ab12cd34.txt`
 * (like Syncthing's): the losing version's mtime (UTC) and the end of the peer id that made it.
 */
export function conflictName (name: string, data: EntryData, loser: Clock): string {
  const peer = loser.mod.reduce((best, [p, t]) => (t > best[1] || (t === best[1] && p > best[0]) ? [p, t] : best), ['', 0] as [string, number])[0]
  const stamp = new Date(data.mtimeMs).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)
  const dot = name.lastIndexOf('.')
  const [stem, ext] = dot > 0 && data.type !== 'dir' ? [name.slice(0, dot), name.slice(dot)] : [name, '']
  const suffix = `.sync-conflict-${stamp}-${peer.slice(-8).toLowerCase()}${ext}`
  return truncateName(stem, MAX_NAME_BYTES - Buffer.byteLength(suffix)) + suffix
}

/** The display name of an entry that lost a name collision (another entry holds its name). */
export function collisionName (name: string, id: string): string {
  const suffix = `.sync-conflict-${id.slice(0, 8)}`
  return truncateName(name, MAX_NAME_BYTES - Buffer.byteLength(suffix)) + suffix
}

function truncateName (name: string, bytes: number): string {
  let out = name
  while (Buffer.byteLength(out) > bytes) out = out.slice(0, -1)
  return out
}

function canonical (data: EntryData): string {
  return JSON.stringify(sorted(data))
}

/** Keys in a fixed order and undefined fields dropped, so equal states encode equally. */
function sorted (data: EntryData): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(data).sort()) {
    const value = (data as unknown as Record<string, unknown>)[key]
    if (value === undefined) continue
    out[key] = key === 'xattrs' && value !== null && typeof value === 'object'
      ? Object.fromEntries(Object.entries(value as Record<string, string>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : value
  }
  return out
}

function bad (message: string): BazilError {
  return new BazilError(ErrorCode.PROTOCOL, `bad change record: ${message}`)
}

export type { ClockJSON }
