/**
 * The volume: a POSIX tree over the metadata store and the CAS, implementing VolumeOps for the
 * FUSE edge. Namespace changes run one at a time inside the volume's actor (they read and write
 * the in-memory namespace and one level batch each); file data goes through OpenFiles. Entries
 * have stable ids, so a rename moves an entry rather than re-creating it.
 */
import { randomBytes } from 'node:crypto'
import { statfs as fsStatfs } from 'node:fs/promises'
import { Actor } from '../actor/actor.ts'
import { BazilError, ErrorCode, expectedError } from '../errors.ts'
import type { Cas } from '../cas/cas.ts'
import type { Attr, StatFs, TimeSpec, VolumeOps } from './types.ts'
import { XATTR_CREATE, XATTR_REPLACE } from './types.ts'
import { MetaStore, ROOT_INO, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, isDir, isFile } from './meta.ts'
import type { Entry } from './meta.ts'
import { OpenFiles } from './open-files.ts'

const NAME_MAX = 255
const S_ISGID = 0o2000
const XATTR_SIZE_MAX = 65536
const O_ACCMODE = 3

export interface VolumeOptions {
  meta: MetaStore
  cas: Cas
  stagingDir: string
  /** A directory on the disk that holds the store, for statfs. */
  storeDir: string
  owner: { uid: number, gid: number }
}

export class Volume implements VolumeOps {
  readonly meta: MetaStore
  readonly files: OpenFiles
  private readonly actor = new Actor({ name: 'volume', mailboxSize: 8192 })

  constructor (private readonly options: VolumeOptions) {
    this.meta = options.meta
    this.files = new OpenFiles({
      meta: options.meta,
      cas: options.cas,
      stagingDir: options.stagingDir,
      inMeta: async fn => await this.actor.ask(fn),
      reap: async ino => { await this.actor.ask(async () => { await this.reap(ino) }) }
    })
  }

  /** Removes entries left with no names by a crash (they were open when it happened). */
  async recover (): Promise<void> {
    await this.actor.ask(async () => {
      for (const entry of [...this.meta.entries.values()]) {
        if (entry.nlink === 0) await this.reap(entry.ino)
      }
    })
  }

  /**
   * Runs `fn` inside the volume's actor, one at a time with every namespace change (sync
   * applies remote changes this way).
   */
  async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    return await this.actor.ask(fn)
  }

  /** Ends reads waiting on stores (they answer EIO), then commits open files and the namespace. */
  async close (): Promise<void> {
    this.files.stopReads()
    await this.files.commitAll({ sync: true })
    await this.options.cas.flush()
    await this.actor.ask(async () => { await this.meta.commit(this.meta.change(), { sync: true }) })
    await this.actor.stop()
  }

  // ---- lookups -------------------------------------------------------------------------

  resolve (path: string): number {
    let ino = ROOT_INO
    if (path === '/' || path === '') return ino
    for (const name of path.split('/')) {
      if (name === '') continue
      const entry = this.meta.get(ino)
      if (!isDir(entry)) throw new BazilError(ErrorCode.NOT_DIR, `${path}: not a directory`)
      const child = this.meta.children.get(ino)?.get(name)
      if (child === undefined) throw expectedError(ErrorCode.NOT_FOUND, `${path}: no such entry`)
      ino = child
    }
    return ino
  }

  private parentOf (path: string): { parent: number, name: string } {
    const slash = path.lastIndexOf('/')
    const name = path.slice(slash + 1)
    if (name === '' || name === '.' || name === '..') throw new BazilError(ErrorCode.INVALID, `${path}: bad name`)
    if (Buffer.byteLength(name) > NAME_MAX) throw new BazilError(ErrorCode.NAME_TOO_LONG, `${path}: name too long`)
    const parent = this.resolve(path.slice(0, slash))
    if (!isDir(this.meta.get(parent))) throw new BazilError(ErrorCode.NOT_DIR, `${path}: parent is not a directory`)
    return { parent, name }
  }

  attr (entry: Entry): Attr {
    const open = this.files.inode(entry.ino)
    const size = open?.staged?.size ?? entry.size
    const mtimeMs = open?.pendingMtimeMs ?? entry.mtimeMs
    return {
      ino: entry.ino,
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      size,
      nlink: entry.nlink,
      blocks: Math.ceil(size / 512),
      atimeMs: entry.atimeMs,
      mtimeMs,
      ctimeMs: Math.max(entry.ctimeMs, open?.pendingMtimeMs ?? 0)
    }
  }

  async getattr (path: string): Promise<Attr> {
    const ino = this.resolve(path)
    if ((this.files.inode(ino)?.writesPending ?? 0) > 0) await this.files.settled(ino)
    return this.attr(this.meta.get(ino))
  }

  async fgetattr (path: string, fh: number): Promise<Attr> {
    if (fh > 0) {
      let ino: number | undefined
      try { ino = this.files.handle(fh).ino } catch {}
      if (ino !== undefined) {
        await this.files.settled(ino)
        return this.attr(this.meta.get(ino))
      }
    }
    return await this.getattr(path)
  }

  async readdir (path: string): Promise<{ names: string[], attrs: Attr[] }> {
    const ino = this.resolve(path)
    if (!isDir(this.meta.get(ino))) throw new BazilError(ErrorCode.NOT_DIR, `${path}: not a directory`)
    const names: string[] = []
    const attrs: Attr[] = []
    for (const [name, child] of this.meta.children.get(ino) ?? []) {
      const entry = this.meta.entries.get(child)
      if (entry === undefined) continue
      names.push(name)
      attrs.push(this.attr(entry))
    }
    return { names, attrs }
  }

  async readlink (path: string): Promise<string> {
    const entry = this.meta.get(this.resolve(path))
    if (entry.target === undefined) throw new BazilError(ErrorCode.INVALID, `${path}: not a symlink`)
    return entry.target
  }

  async statfs (_path: string): Promise<StatFs> {
    const disk = await fsStatfs(this.options.storeDir)
    const files = this.meta.entries.size
    return {
      bsize: disk.bsize,
      frsize: disk.bsize,
      blocks: disk.blocks,
      bfree: disk.bfree,
      bavail: disk.bavail,
      files: files + disk.ffree,
      ffree: disk.ffree,
      favail: disk.ffree,
      namemax: NAME_MAX
    }
  }

  // ---- files ---------------------------------------------------------------------------

  async open (path: string, flags: number): Promise<number> {
    return await this.actor.ask(async () => {
      const entry = this.meta.get(this.resolve(path))
      if (isDir(entry) && (flags & O_ACCMODE) !== 0) throw new BazilError(ErrorCode.IS_DIR, `${path}: is a directory`)
      return this.files.openHandle(entry.ino, flags)
    })
  }

  async create (path: string, mode: number, flags = 2): Promise<number> {
    return await this.actor.ask(async () => {
      const entry = await this.makeEntry(path, S_IFREG | (mode & 0o7777), {})
      return this.files.openHandle(entry.ino, flags)
    })
  }

  async mknod (path: string, mode: number, _dev: number): Promise<void> {
    if ((mode & S_IFMT) !== S_IFREG && (mode & S_IFMT) !== 0) {
      throw new BazilError(ErrorCode.NOT_SUPPORTED, `${path}: device nodes, FIFOs and sockets are not supported`)
    }
    await this.actor.ask(async () => { await this.makeEntry(path, S_IFREG | (mode & 0o7777), {}) })
  }

  async read (fh: number, buffer: Buffer, length: number, position: number): Promise<number> {
    return await this.files.read(fh, buffer, length, position)
  }

  async write (fh: number, buffer: Buffer, length: number, position: number): Promise<number> {
    return await this.files.write(fh, buffer, length, position)
  }

  async writeBehind (fh: number, buffer: Buffer, position: number): Promise<void> {
    await this.files.writeBehind(fh, buffer, position)
  }

  async flush (fh: number): Promise<void> {
    await this.commitHandle(fh, {})
  }

  async fsync (fh: number, _datasync: boolean): Promise<void> {
    await this.commitHandle(fh, { sync: true })
  }

  /** Commits an open file; a write-behind failure on `fh` is reported first (and once). */
  private async commitHandle (fh: number, options: { sync?: boolean }): Promise<void> {
    let failure: unknown
    try {
      await this.files.commit(this.files.handle(fh).ino, options)
    } catch (err) {
      failure = err
    }
    const deferred = this.files.takeError(fh)
    if (deferred !== undefined) throw deferred
    if (failure !== undefined) throw failure
  }

  async release (fh: number): Promise<void> {
    await this.files.release(fh)
  }

  async truncate (path: string, size: number): Promise<void> {
    const ino = this.resolve(path)
    const entry = this.meta.get(ino)
    if (isDir(entry)) throw new BazilError(ErrorCode.IS_DIR, `${path}: is a directory`)
    if (!isFile(entry)) throw new BazilError(ErrorCode.INVALID, `${path}: not a regular file`)
    await this.files.truncate(ino, size)
  }

  async ftruncate (fh: number, size: number): Promise<void> {
    const { ino } = this.files.handle(fh)
    await this.files.truncate(ino, size, fh)
  }

  // ---- namespace -----------------------------------------------------------------------

  async mkdir (path: string, mode: number): Promise<void> {
    await this.actor.ask(async () => { await this.makeEntry(path, S_IFDIR | (mode & 0o7777), {}) })
  }

  async symlink (target: string, path: string): Promise<void> {
    await this.actor.ask(async () => { await this.makeEntry(path, S_IFLNK | 0o777, { target }) })
  }

  async link (existing: string, newPath: string): Promise<void> {
    await this.actor.ask(async () => {
      const entry = this.meta.get(this.resolve(existing))
      if (isDir(entry)) throw new BazilError(ErrorCode.PERMISSION, `${existing}: cannot hard-link a directory`)
      const { parent, name } = this.parentOf(newPath)
      if (this.meta.dir(parent).has(name)) throw new BazilError(ErrorCode.EXISTS, `${newPath}: exists`)
      const now = Date.now()
      const change = this.meta.change()
      change.link(parent, name, entry.ino)
      change.putEntry({ ...entry, nlink: entry.nlink + 1, ctimeMs: now })
      this.touchDir(change, parent, now)
      await this.meta.commit(change)
    })
  }

  async unlink (path: string): Promise<void> {
    await this.actor.ask(async () => {
      const { parent, name } = this.parentOf(path)
      const ino = this.childOf(parent, name, path)
      const entry = this.meta.get(ino)
      if (isDir(entry)) throw new BazilError(ErrorCode.IS_DIR, `${path}: is a directory`)
      const now = Date.now()
      const change = this.meta.change()
      change.unlink(parent, name)
      this.dropLink(change, entry, now)
      this.touchDir(change, parent, now)
      await this.meta.commit(change)
    })
  }

  async rmdir (path: string): Promise<void> {
    await this.actor.ask(async () => {
      if (this.resolve(path) === ROOT_INO) throw new BazilError(ErrorCode.BUSY, 'cannot remove the root')
      const { parent, name } = this.parentOf(path)
      const ino = this.childOf(parent, name, path)
      const entry = this.meta.get(ino)
      if (!isDir(entry)) throw new BazilError(ErrorCode.NOT_DIR, `${path}: not a directory`)
      if ((this.meta.children.get(ino)?.size ?? 0) > 0) throw new BazilError(ErrorCode.NOT_EMPTY, `${path}: directory not empty`)
      const now = Date.now()
      const change = this.meta.change()
      change.unlink(parent, name)
      change.delEntry(ino)
      const p = this.meta.get(parent)
      change.putEntry({ ...p, nlink: p.nlink - 1, mtimeMs: now, ctimeMs: now })
      await this.meta.commit(change)
    })
  }

  async rename (from: string, to: string): Promise<void> {
    await this.actor.ask(async () => {
      const src = this.parentOf(from)
      const ino = this.childOf(src.parent, src.name, from)
      const dst = this.parentOf(to)
      const entry = this.meta.get(ino)
      const existing = this.meta.dir(dst.parent).get(dst.name)
      if (existing === ino) return
      if (isDir(entry)) {
        // A directory may not move below itself.
        for (let p: number | undefined = dst.parent; p !== undefined && p !== ROOT_INO; p = this.parentIno(p)) {
          if (p === ino) throw new BazilError(ErrorCode.INVALID, `${to}: inside ${from}`)
        }
      }
      const now = Date.now()
      const change = this.meta.change()
      if (existing !== undefined) {
        const target = this.meta.get(existing)
        if (isDir(entry) && !isDir(target)) throw new BazilError(ErrorCode.NOT_DIR, `${to}: not a directory`)
        if (!isDir(entry) && isDir(target)) throw new BazilError(ErrorCode.IS_DIR, `${to}: is a directory`)
        if (isDir(target)) {
          if ((this.meta.children.get(existing)?.size ?? 0) > 0) throw new BazilError(ErrorCode.NOT_EMPTY, `${to}: directory not empty`)
          change.unlink(dst.parent, dst.name)
          change.delEntry(existing)
          const dp = this.meta.get(dst.parent)
          change.putEntry({ ...dp, nlink: dp.nlink - 1 })
        } else {
          change.unlink(dst.parent, dst.name)
          this.dropLink(change, target, now)
        }
      }
      change.unlink(src.parent, src.name)
      change.link(dst.parent, dst.name, ino)
      change.putEntry({ ...this.meta.get(ino), ctimeMs: now })
      if (isDir(entry) && src.parent !== dst.parent) {
        const sp = this.meta.get(src.parent)
        change.putEntry({ ...sp, nlink: sp.nlink - 1 })
        const dp = this.meta.get(dst.parent)
        change.putEntry({ ...dp, nlink: dp.nlink + 1 })
      }
      this.touchDir(change, src.parent, now)
      this.touchDir(change, dst.parent, now)
      await this.meta.commit(change)
    })
  }

  // ---- attributes ----------------------------------------------------------------------

  async chmod (path: string, mode: number): Promise<void> {
    await this.updateEntry(path, e => ({ ...e, mode: (e.mode & S_IFMT) | (mode & 0o7777) }))
  }

  async chown (path: string, uid: number, gid: number): Promise<void> {
    await this.updateEntry(path, e => ({
      ...e,
      uid: uid === -1 || uid === 0xffffffff ? e.uid : uid,
      gid: gid === -1 || gid === 0xffffffff ? e.gid : gid
    }))
  }

  async utimens (path: string, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
    const now = Date.now()
    const pick = (t: TimeSpec, old: number): number => t === 'omit' ? old : t === 'now' ? now : t
    const ino = this.resolve(path)
    await this.files.settled(ino) // a write still queued would set mtime after this
    if (mtime !== 'omit') this.files.clearPendingTimes(ino)
    await this.updateEntry(path, e => ({ ...e, atimeMs: pick(atime, e.atimeMs), mtimeMs: pick(mtime, e.mtimeMs) }))
  }

  async setxattr (path: string, name: string, value: Buffer, flags: number): Promise<void> {
    if (name.startsWith('system.')) throw new BazilError(ErrorCode.NOT_SUPPORTED, `${name}: not supported`)
    if (Buffer.byteLength(name) > 255) throw new BazilError(ErrorCode.RANGE, 'xattr name too long')
    if (value.byteLength > XATTR_SIZE_MAX) throw new BazilError(ErrorCode.TOO_BIG, 'xattr value too large')
    await this.updateEntry(path, e => {
      const present = e.xattrs?.[name] !== undefined
      if ((flags & XATTR_CREATE) !== 0 && present) throw new BazilError(ErrorCode.EXISTS, `${name}: exists`)
      if ((flags & XATTR_REPLACE) !== 0 && !present) throw new BazilError(ErrorCode.NO_ATTR, `${name}: no such attribute`)
      return { ...e, xattrs: { ...e.xattrs, [name]: Buffer.from(value).toString('base64') } }
    })
  }

  async getxattr (path: string, name: string): Promise<Buffer> {
    const value = this.meta.get(this.resolve(path)).xattrs?.[name]
    if (value === undefined) throw expectedError(ErrorCode.NO_ATTR, `${name}: no such attribute`)
    return Buffer.from(value, 'base64')
  }

  hasXattr (name: string): boolean {
    for (const entry of this.meta.entries.values()) if (entry.xattrs?.[name] !== undefined) return true
    return false
  }

  /**
   * Calls `seen` (synchronously, before the change is visible to anyone) whenever an entry gets
   * the attribute `name`, by any writer: setxattr, or sync applying a peer's change.
   */
  watchXattr (name: string, seen: () => void): void {
    const previous = this.meta.onXattrs
    this.meta.onXattrs = entry => {
      previous?.(entry)
      if (entry.xattrs?.[name] !== undefined) seen()
    }
  }

  async listxattr (path: string): Promise<string[]> {
    return Object.keys(this.meta.get(this.resolve(path)).xattrs ?? {})
  }

  async removexattr (path: string, name: string): Promise<void> {
    await this.updateEntry(path, e => {
      if (e.xattrs?.[name] === undefined) throw new BazilError(ErrorCode.NO_ATTR, `${name}: no such attribute`)
      const xattrs = { ...e.xattrs }
      delete xattrs[name]
      return { ...e, xattrs }
    })
  }

  // ---- helpers -------------------------------------------------------------------------

  private async updateEntry (path: string, fn: (e: Entry) => Entry): Promise<void> {
    await this.actor.ask(async () => {
      const entry = this.meta.get(this.resolve(path))
      const change = this.meta.change()
      change.putEntry({ ...fn(entry), ctimeMs: Date.now() })
      await this.meta.commit(change)
    })
  }

  private childOf (parent: number, name: string, path: string): number {
    const ino = this.meta.children.get(parent)?.get(name)
    if (ino === undefined) throw new BazilError(ErrorCode.NOT_FOUND, `${path}: no such entry`)
    return ino
  }

  /** The parent of a directory (directories have exactly one name). */
  private parentIno (dirIno: number): number | undefined {
    return this.meta.parentOf(dirIno)
  }

  private async makeEntry (path: string, mode: number, extra: { target?: string }): Promise<Entry> {
    const { parent, name } = this.parentOf(path)
    if (this.meta.dir(parent).has(name)) throw new BazilError(ErrorCode.EXISTS, `${path}: exists`)
    const now = Date.now()
    const change = this.meta.change()
    const dir = (mode & S_IFMT) === S_IFDIR
    // A set-group-ID directory passes its group on, and its bit to new subdirectories (as
    // inode_init_owner does in the kernel for local file systems).
    const parentEntry = this.meta.get(parent)
    const inheritGroup = (parentEntry.mode & S_ISGID) !== 0
    const entry: Entry = {
      ino: this.meta.allocIno(change),
      id: randomBytes(16).toString('hex'),
      mode: inheritGroup && dir ? mode | S_ISGID : mode,
      uid: this.options.owner.uid,
      gid: inheritGroup ? parentEntry.gid : this.options.owner.gid,
      size: dir ? 4096 : extra.target !== undefined ? Buffer.byteLength(extra.target) : 0,
      nlink: dir ? 2 : 1,
      atimeMs: now,
      mtimeMs: now,
      ctimeMs: now,
      birthMs: now,
      ...(extra.target !== undefined ? { target: extra.target } : {}),
      content: null
    }
    change.putEntry(entry)
    change.link(parent, name, entry.ino)
    const p = this.meta.get(parent)
    change.putEntry({ ...p, nlink: dir ? p.nlink + 1 : p.nlink, mtimeMs: now, ctimeMs: now })
    await this.meta.commit(change)
    return entry
  }

  private touchDir (change: ReturnType<MetaStore['change']>, ino: number, now: number): void {
    const dir = this.meta.get(ino)
    change.putEntry({ ...dir, mtimeMs: now, ctimeMs: now })
  }

  /** Drops one name of a non-directory; the entry goes when it has no names and no handles. */
  private dropLink (change: ReturnType<MetaStore['change']>, entry: Entry, now: number): void {
    const current = this.meta.get(entry.ino)
    const nlink = current.nlink - 1
    if (nlink <= 0 && !this.files.isOpen(entry.ino)) change.delEntry(entry.ino)
    else change.putEntry({ ...current, nlink: Math.max(0, nlink), ctimeMs: now })
  }

  private async reap (ino: number): Promise<void> {
    const entry = this.meta.entries.get(ino)
    if (entry === undefined || entry.nlink > 0 || this.files.isOpen(ino)) return
    const change = this.meta.change()
    change.delEntry(ino)
    await this.meta.commit(change)
  }
}
