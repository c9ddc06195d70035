/**
 * A replica in memory for the sync engine's tests: a tree of entries by stable id (what the
 * volume is to the real engine), path-based local operations that call `noteLocal` the way the
 * volume does, and `pull(from)`, which moves one peer's log across in pages as the protocol
 * would (records are encoded and decoded on the way).
 */
import { createHash } from 'node:crypto'
import { SyncEngine } from '../../src/sync/engine.ts'
import type { SyncTree } from '../../src/sync/engine.ts'
import { decodeRecord, ROOT_ID } from '../../src/sync/record.ts'
import type { EntryData, EntryType } from '../../src/sync/record.ts'

export class MemoryTree implements SyncTree {
  readonly entries = new Map<string, EntryData>()
  readonly busyIds = new Set<string>()

  get (id: string): EntryData | undefined {
    const data = this.entries.get(id)
    return data === undefined ? undefined : { ...data }
  }

  lookup (parent: string, name: string): string | undefined {
    for (const [id, data] of this.entries) if (data.parent === parent && data.name === name) return id
    return undefined
  }

  children (id: string): string[] {
    return [...this.entries].filter(([, data]) => data.parent === id).map(([child]) => child)
  }

  busy (id: string): boolean { return this.busyIds.has(id) }

  put (id: string, data: EntryData): void {
    const at = this.lookup(data.parent, data.name)
    if (at !== undefined && at !== id) throw new Error(`put ${id}: ${data.name} is taken by ${at}`)
    if (data.parent !== ROOT_ID && this.entries.get(data.parent)?.type !== 'dir') throw new Error(`put ${id}: no directory ${data.parent}`)
    this.entries.set(id, { ...data })
  }

  remove (id: string): void {
    if (this.children(id).length > 0) throw new Error(`remove ${id}: not empty`)
    this.entries.delete(id)
  }

  /** Path → id for every entry. */
  paths (): Map<string, string> {
    const out = new Map<string, string>()
    const walk = (parent: string, prefix: string): void => {
      for (const id of this.children(parent)) {
        const data = this.entries.get(id) as EntryData
        const path = `${prefix}/${data.name}`
        out.set(path, id)
        if (data.type === 'dir') walk(id, path)
      }
    }
    walk(ROOT_ID, '')
    return out
  }

  /** The tree as text: one line per path with type and content, sorted (for equality). */
  render (): string[] {
    return [...this.paths()].map(([path, id]) => {
      const d = this.entries.get(id) as EntryData
      return `${path} ${d.type}${d.type === 'file' ? ` ${d.content?.root.slice(0, 8) ?? '-'} ${d.size}` : ''}${d.type === 'symlink' ? ` -> ${d.target ?? ''}` : ''} ${d.perm.toString(8)}`
    }).sort()
  }
}

let clockMs = Date.UTC(2026, 11, 4)
/** Entry ids as the volume makes them (32 hex digits), but reproducible: from the replica's name and a count. */
function nextId (replica: string, serial: number): string {
  return createHash('sha256').update(`${replica}:${serial}`).digest('hex').slice(0, 32)
}

export class Replica {
  readonly tree = new MemoryTree()
  readonly engine: SyncEngine
  private made = 0

  constructor (readonly name: string) {
    this.engine = new SyncEngine(`peer-${name}`, this.tree)
  }

  resolve (path: string): string {
    if (path === '/' || path === '') return ROOT_ID
    const id = this.tree.paths().get(path)
    if (id === undefined) throw new Error(`${this.name}: no ${path}`)
    return id
  }

  has (path: string): boolean { return this.tree.paths().has(path) }

  private place (path: string): { parent: string, name: string } {
    const slash = path.lastIndexOf('/')
    return { parent: this.resolve(path.slice(0, slash)), name: path.slice(slash + 1) }
  }

  private make (path: string, type: EntryType, extra: Partial<EntryData> = {}): string {
    const id = nextId(this.name, this.made++)
    const { parent, name } = this.place(path)
    this.tree.put(id, { type, parent, name, perm: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtimeMs: 0, size: 0, ...extra })
    this.engine.noteLocal(id)
    return id
  }

  mkdir (path: string): string { return this.make(path, 'dir') }
  symlink (path: string, target: string): string { return this.make(path, 'symlink', { target, size: target.length }) }

  /** Creates or overwrites a file with `text` as its content (the content root is its hash). */
  write (path: string, text: string): string {
    const content = { root: Buffer.from(text.padEnd(32, '.').slice(0, 32)).toString('hex'), depth: 0 }
    if (this.has(path)) {
      const id = this.resolve(path)
      const data = this.tree.get(id) as EntryData
      this.tree.put(id, { ...data, content, size: text.length, mtimeMs: clockMs++ })
      this.engine.noteLocal(id)
      return id
    }
    return this.make(path, 'file', { content, size: text.length, mtimeMs: clockMs++ })
  }

  /** The text written to a file (as `write` encoded it). */
  read (path: string): string {
    const data = this.tree.get(this.resolve(path)) as EntryData
    return Buffer.from(data.content?.root ?? '', 'hex').toString().replace(/\.+$/, '')
  }

  chmod (path: string, perm: number): void {
    const id = this.resolve(path)
    this.tree.put(id, { ...(this.tree.get(id) as EntryData), perm })
    this.engine.noteLocal(id)
  }

  /** rename(2): a file or empty directory at `to` is replaced in the same step. */
  rename (from: string, to: string): void {
    const id = this.resolve(from)
    const { parent, name } = this.place(to)
    const existing = this.tree.lookup(parent, name)
    if (existing !== undefined && existing !== id) {
      if (this.tree.children(existing).length > 0) throw new Error(`rename onto a non-empty ${to}`)
      this.tree.remove(existing)
    }
    this.tree.put(id, { ...(this.tree.get(id) as EntryData), parent, name })
    if (existing !== undefined && existing !== id) this.engine.noteLocal(existing)
    this.engine.noteLocal(id)
  }

  /** Removes a file, symlink or (recursively, children first, like rm -r) a directory. */
  remove (path: string): void {
    const id = this.resolve(path)
    const walk = (at: string): void => {
      // Asked again each time: sync may place a waiting entry here meanwhile (rmdir would
      // then fail with ENOTEMPTY; rm -r tries again).
      for (let children = this.tree.children(at); children.length > 0; children = this.tree.children(at)) {
        for (const child of children) walk(child)
      }
      this.tree.remove(at)
      this.engine.noteLocal(at)
    }
    walk(id)
  }

  /** Pulls everything `from` has after our cursor, in pages of `page` records; returns how many came. */
  pull (from: Replica, page = 7): number {
    let pulled = 0
    for (;;) {
      const since = this.engine.cursor(from.engine.self)
      const records = from.engine.read(since, page)
      if (records.length === 0) return pulled
      pulled += records.length
      this.engine.apply(from.engine.self, records.map(r => decodeRecord(r.body)), records.at(-1)?.seq as number)
    }
  }
}

/** Syncs every pair both ways until a whole round changes nothing. */
export function converge (replicas: Replica[], maxRounds = 50): number {
  for (let round = 1; round <= maxRounds; round++) {
    let pulled = 0
    for (const a of replicas) for (const b of replicas) if (a !== b) pulled += a.pull(b)
    if (pulled === 0) return round
  }
  throw new Error(`no convergence after ${maxRounds} rounds`)
}
