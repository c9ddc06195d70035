/**
 * Open files: handles (fh numbers given to the kernel), one OpenInode per open entry shared by
 * its handles, the staging file that receives writes, and the commit that turns staged content
 * into chunks and a new manifest. Each OpenInode has its own single-concurrency actor, so the
 * writes, truncates, reads and commits of one file are ordered while other files go on.
 */
import { Actor } from '../actor/actor.ts'
import { BazilError, ErrorCode } from '../errors.ts'
import { ContentReader } from '../cas/manifest.ts'
import { ContentBuilder, writeContent } from '../cas/writer.ts'
import type { Cas } from '../cas/cas.ts'
import { StagedFile } from './staging.ts'
import type { Entry, MetaStore } from './meta.ts'
import type { ContentRef, PrefetchFrontier } from '../cas/manifest.ts'
import { logger } from '../util/log.ts'

const log = logger('bazil:files')
const O_APPEND = 0o2000

export interface OpenInode {
  ino: number
  handles: number
  staged: StagedFile | null
  /** Times of the latest write, kept in memory until the commit persists them. */
  pendingMtimeMs: number | null
  actor: Actor
  /** Write-behind writes queued on the actor and not yet applied (see `writeBehind`). */
  writesPending: number
  eager: EagerCommit | null
  /** Where the last read ended and how many reads in a row continued the one before (read-ahead). */
  readEnd?: number
  streak?: number
  /** How far read-ahead has asked for chunks of the content `root` (reset when the reads jump or the content changes). */
  prefetched?: PrefetchFrontier & { root: string }
}

/** Read-ahead past a sequential read: it doubles with each read that continues the last, up to this. */
const MAX_READ_AHEAD_BYTES = 8 * 1024 * 1024
const FIRST_READ_AHEAD_BYTES = 256 * 1024
/** Reads that start this close to where the last one ended count as sequential (the kernel has several in flight). */
const SEQUENTIAL_SLACK_BYTES = 1024 * 1024

/**
 * Chunking that runs while a file is still being written sequentially from 0, so the commit
 * at close only has the tail left. Any write or truncate below what it has read invalidates it.
 */
interface EagerCommit {
  builder: ContentBuilder
  readUpTo: number
  running: Promise<void> | null
  valid: boolean
}

/** Staged bytes that accumulate before eager chunking starts on them. */
const EAGER_STEP = 32 * 1024 * 1024

interface Handle {
  ino: number
  flags: number
  /** The first write-behind failure on this handle, until a flush or fsync reports it. */
  error?: unknown
}

export interface OpenFilesDeps {
  meta: MetaStore
  cas: Cas
  stagingDir: string
  /** Runs fn inside the volume's metadata actor. */
  inMeta: <T>(fn: () => Promise<T>) => Promise<T>
  /** Called when an entry with no names has no handles left. */
  reap: (ino: number) => Promise<void>
}

export class OpenFiles {
  private readonly handles = new Map<number, Handle>()
  private readonly inodes = new Map<number, OpenInode>()
  private nextFh = 1
  /** Ends reads of committed content still waiting on a store (see `stopReads`). */
  private readonly reads = new AbortController()

  constructor (private readonly deps: OpenFilesDeps) {}

  /**
   * Reads of committed content in flight, and later ones, fail with CLOSED (EIO to the reader)
   * instead of waiting on a slow or hung remote store: the volume is closing. Commits go on.
   */
  stopReads (): void {
    this.reads.abort(new BazilError(ErrorCode.CLOSED, 'the volume is closing'))
  }

  get openCount (): number { return this.handles.size }

  isOpen (ino: number): boolean { return this.inodes.has(ino) }

  /** The open state of an entry, if any (for size and times in getattr). */
  inode (ino: number): OpenInode | undefined { return this.inodes.get(ino) }

  openHandle (ino: number, flags: number): number {
    let inode = this.inodes.get(ino)
    if (inode === undefined) {
      inode = { ino, handles: 0, staged: null, pendingMtimeMs: null, writesPending: 0, eager: null, actor: new Actor({ name: `file ${ino}`, mailboxSize: 4096 }) }
      this.inodes.set(ino, inode)
    }
    inode.handles++
    let fh = this.nextFh++
    if (fh >= 0x40000000) { this.nextFh = 1; fh = this.nextFh++ } // bit 30 is the FUSE edge's
    this.handles.set(fh, { ino, flags })
    return fh
  }

  handle (fh: number): { ino: number, inode: OpenInode } {
    const handle = this.handles.get(fh)
    const inode = handle === undefined ? undefined : this.inodes.get(handle.ino)
    if (handle === undefined || inode === undefined) throw new BazilError(ErrorCode.BAD_HANDLE, `no open handle ${fh}`)
    return { ino: handle.ino, inode }
  }

  async read (fh: number, buffer: Buffer, length: number, position: number): Promise<number> {
    const { ino, inode } = this.handle(fh)
    if (inode.staged !== null || inode.writesPending > 0) {
      return await inode.actor.ask(async () => {
        if (inode.staged !== null) return await inode.staged.read(buffer, length, position)
        return await this.readCommitted(this.deps.meta.get(ino), buffer, length, position)
      })
    }
    const sequential = inode.readEnd !== undefined && Math.abs(position - inode.readEnd) <= SEQUENTIAL_SLACK_BYTES
    inode.streak = sequential ? Math.min((inode.streak ?? 0) + 1, 16) : 0
    inode.readEnd = Math.max(position + length, sequential ? inode.readEnd ?? 0 : 0)
    const ahead = inode.streak === 0 ? 0 : Math.min(MAX_READ_AHEAD_BYTES, FIRST_READ_AHEAD_BYTES * 2 ** (inode.streak - 1))
    const entry = this.deps.meta.get(ino)
    const root = entry.content?.root
    if (root != null && (inode.streak === 0 || inode.prefetched?.root !== root)) inode.prefetched = { to: 0, root }
    return await this.readCommitted(entry, buffer, length, position, ahead, inode.prefetched)
  }

  /**
   * `readAhead`: bytes past this read to start fetching (chunks from remote stores and peers
   * arrive in parallel); `frontier`: where the previous read-ahead of this reader stopped.
   */
  async readCommitted (entry: Entry, buffer: Buffer, length: number, position: number, readAhead = 0, frontier?: PrefetchFrontier): Promise<number> {
    const n = Math.max(0, Math.min(length, entry.size - position))
    if (n === 0) return 0
    if (entry.content == null) {
      buffer.fill(0, 0, n)
      return n
    }
    const signal = this.reads.signal
    try {
      await new ContentReader(this.deps.cas, entry.content, entry.size).read(position, n, buffer, 0, { prefetch: true, readAhead, frontier, signal })
    } catch (err) {
      if (signal.aborted) throw signal.reason
      throw err
    }
    return n
  }

  async write (fh: number, buffer: Buffer, length: number, position: number): Promise<number> {
    const { ino, inode } = this.handle(fh)
    const append = ((this.handles.get(fh)?.flags ?? 0) & O_APPEND) !== 0
    return await inode.actor.ask(async () => await this.applyWrite(ino, inode, buffer, length, position, append))
  }

  /**
   * A write the kernel has already been answered for: queued on the file's actor now, so
   * everything asked of the file later comes after it (reads and getattr wait for it through
   * `settled`), applied in turn; a failure is kept for the next flush or fsync of `fh`
   * (`takeError`). Never rejects.
   */
  async writeBehind (fh: number, buffer: Buffer, position: number): Promise<void> {
    const handle = this.handles.get(fh)
    const inode = handle === undefined ? undefined : this.inodes.get(handle.ino)
    if (handle === undefined || inode === undefined) {
      log.error('write-behind of %d bytes to handle %d, which is not open: dropped', buffer.byteLength, fh)
      return
    }
    const append = (handle.flags & O_APPEND) !== 0
    inode.writesPending++
    try {
      await inode.actor.ask(async () => {
        try {
          await this.applyWrite(handle.ino, inode, buffer, buffer.byteLength, position, append)
        } catch (err) {
          handle.error ??= err
          log('write-behind to entry %d failed (reported at the next flush or fsync): %s', handle.ino, (err as Error).message)
        }
      })
    } catch (err) {
      handle.error ??= err // the actor refused it (stopped, or its mailbox was full)
    } finally {
      inode.writesPending--
    }
  }

  /** Waits until the write-behind writes queued for an entry so far are applied. */
  async settled (ino: number): Promise<void> {
    const inode = this.inodes.get(ino)
    if (inode !== undefined && inode.writesPending > 0) await inode.actor.ask(() => {})
  }

  /** The first write-behind failure on `fh` since the last call, if any (cleared). */
  takeError (fh: number): unknown {
    const handle = this.handles.get(fh)
    const error = handle?.error
    if (handle !== undefined) handle.error = undefined
    return error
  }

  private async applyWrite (ino: number, inode: OpenInode, buffer: Uint8Array, length: number, position: number, append: boolean): Promise<number> {
    const staged = await this.stage(ino, inode)
    // O_APPEND writes land at the true end, as pwrite(2) does: the kernel's idea of the
    // size can be stale when another name of the file (a hard link) changed it.
    if (append) position = staged.size
    const n = await staged.write(buffer, length, position)
    inode.pendingMtimeMs = Date.now()
    this.advanceEager(inode, staged, position)
    return n
  }

  /** Truncates an entry through its open state (opening a temporary one if needed). */
  async truncate (ino: number, size: number, fh?: number): Promise<void> {
    const temporary = fh === undefined && !this.inodes.has(ino)
    const tempFh = temporary ? this.openHandle(ino, 0) : undefined
    const inode = this.inodes.get(ino) as OpenInode
    try {
      await inode.actor.ask(async () => {
        const staged = await this.stage(ino, inode)
        await staged.truncate(size)
        inode.pendingMtimeMs = Date.now()
        if (inode.eager !== null && size < inode.eager.readUpTo) inode.eager.valid = false
      })
      if (temporary) await this.commit(ino)
    } finally {
      if (tempFh !== undefined) await this.release(tempFh)
    }
  }

  /** Turns staged content into chunks and a manifest and records it; `sync` makes it durable. */
  async commit (ino: number, options: { sync?: boolean } = {}): Promise<void> {
    const inode = this.inodes.get(ino)
    if (inode === undefined) return
    await inode.actor.ask(async () => {
      const staged = inode.staged
      const mtime = inode.pendingMtimeMs
      if (staged === null || (!staged.dirty && mtime === null)) {
        if (options.sync === true) {
          // Earlier commits stored their objects lazily: make them durable, then the metadata.
          await this.deps.cas.flush()
          await this.deps.inMeta(async () => { await this.deps.meta.commit(this.deps.meta.change(), { sync: true }) })
        }
        return
      }
      const size = staged.size
      const content = staged.dirty ? await this.chunk(inode, staged) : undefined
      if (options.sync === true) await this.deps.cas.flush()
      await this.deps.inMeta(async () => {
        const entry = this.deps.meta.entries.get(ino)
        if (entry === undefined) return
        const change = this.deps.meta.change()
        const next: Entry = { ...entry }
        if (content !== undefined) { next.size = size; next.content = content }
        if (mtime !== null) { next.mtimeMs = mtime; next.ctimeMs = Math.max(mtime, entry.ctimeMs) }
        change.putEntry(next)
        await this.deps.meta.commit(change, { sync: options.sync })
      })
      inode.pendingMtimeMs = null
      if (content !== undefined) await staged.rebase(content === null ? null : new ContentReader(this.deps.cas, content, size))
      log('committed entry %d: %d bytes', ino, size)
    })
  }

  async release (fh: number): Promise<void> {
    const { ino, inode } = this.handle(fh)
    this.handles.delete(fh)
    inode.handles--
    if (inode.handles > 0) return
    try {
      await this.commit(ino)
    } finally {
      if (inode.handles === 0) {
        this.inodes.delete(ino)
        await inode.staged?.close()
        await inode.actor.stop()
        const entry = this.deps.meta.entries.get(ino)
        if (entry !== undefined && entry.nlink === 0) await this.deps.reap(ino)
      }
    }
  }

  /** Commits every open file (used by stop and by fsync of the whole volume). */
  async commitAll (options: { sync?: boolean } = {}): Promise<void> {
    for (const ino of [...this.inodes.keys()]) await this.commit(ino, options)
  }

  /** Forgets a pending mtime (utimens by the user overrides the write time). */
  clearPendingTimes (ino: number): void {
    const inode = this.inodes.get(ino)
    if (inode !== undefined) inode.pendingMtimeMs = null
  }

  private advanceEager (inode: OpenInode, staged: StagedFile, position: number): void {
    if (!staged.stagedOnly) {
      if (inode.eager !== null) inode.eager.valid = false
      return
    }
    inode.eager ??= { builder: new ContentBuilder(this.deps.cas), readUpTo: 0, running: null, valid: true }
    const eager = inode.eager
    if (position < eager.readUpTo) eager.valid = false
    if (!eager.valid || eager.running !== null || staged.size - eager.builder.offset < EAGER_STEP) return
    const upTo = staged.size
    eager.readUpTo = upTo
    eager.running = eager.builder.feed(async (o, l, t) => { await staged.readAt(o, l, t) }, upTo, false)
      .catch(err => {
        log('eager chunking of entry %d stopped: %s', inode.ino, (err as Error).message)
        eager.valid = false
      })
      .finally(() => { eager.running = null })
  }

  /** Chunks the staged content, finishing the eager work when it is still valid. */
  private async chunk (inode: OpenInode, staged: StagedFile): Promise<ContentRef | null> {
    const eager = inode.eager
    inode.eager = null
    const readAt = async (o: number, l: number, t: Buffer): Promise<void> => { await staged.readAt(o, l, t) }
    if (eager !== null) {
      await eager.running
      if (eager.valid && staged.stagedOnly && staged.size >= eager.builder.offset) {
        await eager.builder.feed(readAt, staged.size, true)
        return await eager.builder.finish()
      }
      await eager.builder.abandon()
    }
    return await writeContent(this.deps.cas, staged.size, readAt)
  }

  private async stage (ino: number, inode: OpenInode): Promise<StagedFile> {
    if (inode.staged === null) {
      const entry = this.deps.meta.get(ino)
      const base = entry.content == null ? null : new ContentReader(this.deps.cas, entry.content, entry.size)
      inode.staged = await StagedFile.create(this.deps.stagingDir, base, entry.size)
    }
    return inode.staged
  }
}
