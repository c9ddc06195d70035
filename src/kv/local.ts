/**
 * The local disk store: one file per object, written atomically and durably, with every KV
 * capability. The embedded default store of a node (arena packing comes later).
 *
 * On-disk layout under `dir` (one LocalStore per dir; the daemon's data-dir lock ensures it):
 *
 *   dir/objects/<hh>/<rest>   an object; <hh><rest> is the lowercase hex of its key, <hh> the
 *                             first byte. A shard dir <hh> is made on its first put. The file
 *                             holds the value's bytes exactly, nothing else.
 *   dir/tmp/<hex>.<pid>.<n>   a put in progress; anything here on open is a crash leftover and
 *                             is removed.
 *
 * A put writes the temp file, fdatasyncs it, renames it into place (the commit point: a reader
 * sees either no object or the whole one) and fsyncs the shard dir. Dir fsyncs are group
 * committed: puts whose rename lands while a sync of their dir is running share the next one.
 * `fsync: false` skips both syncs (atomic, not durable across a power cut).
 *
 * Small puts that need no sync before they resolve (lazy, or `fsync: false`) and `has` run
 * synchronously on the calling thread: each is a few page-cache syscalls of microseconds, while
 * a hop through libuv's thread pool costs 100–300 µs per call on a busy 2-core machine, and a
 * small file's close waits on five of them in a row (DECISIONS.md, "Small files"). Creating a
 * file is the slow one of those syscalls on ext4 here (50–500 µs), so a few empty temp files
 * are created ahead on the thread pool (`dir/tmp/spare.<pid>.<n>`, open) for them to fill.
 *
 * Keys are 2–127 bytes (chunk ids are 32), so a file name stays under 255 bytes.
 */
import { close as closeCallback, closeSync, fdatasync as fdatasyncCallback, fsync as fsyncCallback, open as openCallback, openSync, readFile as readFileCallback, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { BazilError, ErrorCode, fromSystemError, throwIfAborted } from '../errors.ts'
import { logger } from '../util/log.ts'
import type { FullKV, KVFlush, KVOptions, KVPutOptions } from './kv.ts'

const log = logger('bazil:kv')

export interface LocalStoreOptions {
  /** fsync objects and dirs so a resolved put survives a power cut. Default true. */
  fsync?: boolean
  /**
   * The caller never stores empty values (the CAS: a sealed chunk is at least 17 bytes), so an
   * empty object found at open is a lazy put cut off by a power failure, and is removed.
   */
  emptyIsTorn?: boolean
}

const MIN_KEY_BYTES = 2
/** Values up to this size are written synchronously when no sync is needed before resolving. */
const SYNC_PUT_MAX = 128 * 1024
/** Empty temp files kept created and open for synchronous puts. */
const SPARE_TEMPS = 32
const MAX_KEY_BYTES = 127

export class LocalStore implements FullKV, KVFlush {
  readonly dir: string
  readonly #objects: string
  readonly #tmp: string
  readonly #fsync: boolean
  readonly #dirSync = new GroupDirSync()
  readonly #lazySync = new LazySync()
  /** Every operation in progress (with its shard creations and dir syncs), for close(). */
  readonly #pending = new Set<Promise<unknown>>()
  /** Puts in progress by key hex, so a second put or a delete of the same key waits for it. */
  readonly #inflight = new Map<string, Promise<void>>()
  /** Shard dirs known to exist (and be durable) or being made, by name. */
  readonly #shardReady = new Map<string, Promise<void>>()
  /** Shard dirs whose creation has finished (a synchronous put may rename into them). */
  readonly #shardDone = new Set<string>()
  /** Lazy puts whose object is renamed into place but not yet fsynced. */
  readonly #durability = new Set<Promise<void>>()
  #objectCount = 0
  #byteCount = 0
  #tmpSeq = 0
  /** Created, open, empty temp files for synchronous puts (see the module comment). */
  readonly #spares: Array<{ fd: number, path: string }> = []
  #refilling = false
  #closed = false

  readonly #emptyIsTorn: boolean

  private constructor (dir: string, fsync: boolean, emptyIsTorn: boolean) {
    this.#emptyIsTorn = emptyIsTorn
    this.dir = dir
    this.#objects = join(dir, 'objects')
    this.#tmp = join(dir, 'tmp')
    this.#fsync = fsync
  }

  static async open (dir: string, options: LocalStoreOptions = {}): Promise<LocalStore> {
    const store = new LocalStore(dir, options.fsync ?? true, options.emptyIsTorn === true)
    try {
      await store.#prepare()
    } catch (err) {
      throw fromSystemError(err, `open local store ${dir}`)
    }
    return store
  }

  /** Refuses new calls with CLOSED, then waits for every operation in progress to finish. */
  async close (): Promise<void> {
    this.#closed = true
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending])
    this.#lazySync.close()
    for (const spare of this.#spares.splice(0)) {
      try {
        closeSync(spare.fd)
        unlinkSync(spare.path)
      } catch (err) {
        log.error('removing %s: %O', spare.path, err)
      }
    }
  }

  async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    const hex = this.#enter(key, options)
    return await this.#track((async () => {
      try {
        // The callback readFile: fs/promises' FileHandle version cost a 1 GiB read ~1.3 s of
        // main thread in its open/fstat/read/close hops, this one about half.
        return await new Promise<Buffer>((resolve, reject) => {
          readFileCallback(this.#objectPath(hex), { signal: options?.signal }, (err, data) => { if (err === null) resolve(data); else reject(err) })
        })
      } catch (err) {
        throw toKVError(err, `get ${hex}`)
      }
    })())
  }

  /** Waits until every put so far, lazy ones included, is durable. */
  async flush (options?: KVOptions): Promise<void> {
    this.#checkOpen(options)
    this.#lazySync.waiting++
    try {
      while (this.#durability.size > 0) await raceAbort(Promise.all([...this.#durability]).then(() => {}), options?.signal)
    } finally {
      this.#lazySync.waiting--
    }
  }

  async put (key: Uint8Array, value: Uint8Array, options?: KVPutOptions): Promise<void> {
    const hex = this.#enter(key, options)
    for (let running = this.#inflight.get(hex); running !== undefined; running = this.#inflight.get(hex)) {
      await raceAbort(running.catch(() => {}), options?.signal)
    }
    this.#checkOpen(options)
    const done = this.#track(this.#put(hex, value, options?.signal, options?.lazy === true))
    this.#inflight.set(hex, done)
    try {
      await done
    } finally {
      this.#inflight.delete(hex)
    }
  }

  async has (key: Uint8Array, options?: KVOptions): Promise<boolean> {
    const hex = this.#enter(key, options)
    try {
      // Synchronous: a stat of a cached dentry (see the module comment).
      return statSync(this.#objectPath(hex), { throwIfNoEntry: false }) !== undefined
    } catch (err) {
      throw toKVError(err, `has ${hex}`)
    }
  }

  async delete (key: Uint8Array, options?: KVOptions): Promise<void> {
    const hex = this.#enter(key, options)
    const running = this.#inflight.get(hex)
    if (running !== undefined) await raceAbort(running.catch(() => {}), options?.signal)
    this.#checkOpen(options)
    await this.#track(this.#delete(hex))
  }

  async * keys (options?: KVOptions): AsyncIterable<Uint8Array> {
    this.#checkOpen(options)
    const shards = await this.#track(this.#shards().catch((err: unknown) => { throw toKVError(err, 'list shards') }))
    for (const shard of shards) {
      this.#checkOpen(options)
      const names = await this.#track(readdir(join(this.#objects, shard)).catch((err: unknown) => {
        throw toKVError(err, `list shard ${shard}`)
      }))
      for (const name of names) {
        if (isObjectName(name)) yield Buffer.from(shard + name, 'hex')
      }
    }
  }

  async stat (options?: KVOptions): Promise<{ objects: number, bytes: number }> {
    this.#checkOpen(options)
    return { objects: this.#objectCount, bytes: this.#byteCount }
  }

  async #delete (hex: string): Promise<void> {
    const path = this.#objectPath(hex)
    try {
      const { size } = await stat(path)
      await unlink(path)
      this.#objectCount--
      this.#byteCount -= size
      if (this.#fsync) await this.#dirSync.sync(this.#shardDir(hex))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw toKVError(err, `delete ${hex}`)
    }
  }

  async #put (hex: string, value: Uint8Array, signal: AbortSignal | undefined, lazy: boolean): Promise<void> {
    const path = this.#objectPath(hex)
    if ((lazy || !this.#fsync) && value.byteLength <= SYNC_PUT_MAX) {
      if (!this.#shardDone.has(hex.slice(0, 2))) await this.#shard(hex)
      throwIfAborted(signal)
      const stored = this.#putSync(hex, path, value, lazy && this.#fsync && this.#lazySync.canTakeFd)
      if (stored === false) return
      this.#stored(hex, path, value.byteLength, lazy, stored ?? undefined)
      return
    }
    try {
      await stat(path)
      return // already stored: content addressing makes the value the same
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw toKVError(err, `put ${hex}`)
    }
    const temp = join(this.#tmp, `${hex}.${process.pid}.${this.#tmpSeq++}`)
    const shardReady = this.#shard(hex)
    try {
      const file = await open(temp, 'wx', 0o600)
      try {
        await file.writeFile(value, { signal })
        if (this.#fsync && !lazy) await file.datasync()
      } finally {
        await file.close()
      }
      await shardReady
      throwIfAborted(signal)
      await rename(temp, path) // the commit point: no abort past here
    } catch (err) {
      await rm(temp, { force: true }).catch((rmErr: unknown) => { log.error('removing %s: %O', temp, rmErr) })
      throw toKVError(err, `put ${hex}`)
    }
    this.#stored(hex, path, value.byteLength, lazy)
    if (this.#fsync && !lazy) {
      try {
        await this.#dirSync.sync(this.#shardDir(hex))
      } catch (err) {
        throw toKVError(err, `put ${hex}: sync dir`)
      }
    }
  }

  /**
   * The synchronous form of a put (temp file, rename) for a small value whose shard dir exists.
   * Returns false if the object was already there, else its still open fd if `keepFd` (for the
   * lazy sync to fdatasync without opening it again) or null.
   */
  #putSync (hex: string, path: string, value: Uint8Array, keepFd: boolean): number | null | false {
    try {
      if (statSync(path, { throwIfNoEntry: false }) !== undefined) return false
    } catch (err) {
      throw toKVError(err, `put ${hex}`)
    }
    const spare = this.#spares.pop()
    this.#refillSpares()
    const temp = spare?.path ?? join(this.#tmp, `${hex}.${process.pid}.${this.#tmpSeq++}`)
    let fd: number | undefined = spare?.fd
    try {
      fd ??= openSync(temp, 'wx', 0o600)
      let done = 0
      while (done < value.byteLength) done += writeSync(fd, value, done, value.byteLength - done)
      renameSync(temp, path) // the commit point
    } catch (err) {
      if (fd !== undefined) closeSync(fd)
      try { rmSync(temp, { force: true }) } catch (rmErr) { log.error('removing %s: %O', temp, rmErr) }
      throw toKVError(err, `put ${hex}`)
    }
    if (keepFd) return fd
    closeSync(fd)
    return null
  }

  /** Creates spare temp files in the background until there are enough. */
  #refillSpares (): void {
    if (this.#refilling || this.#closed || this.#spares.length >= SPARE_TEMPS / 2) return
    this.#refilling = true
    void this.#track((async () => {
      try {
        while (!this.#closed && this.#spares.length < SPARE_TEMPS) {
          const path = join(this.#tmp, `spare.${process.pid}.${this.#tmpSeq++}`)
          const fd = await new Promise<number>((resolve, reject) => {
            openCallback(path, 'wx', 0o600, (err, fd) => { if (err === null) resolve(fd); else reject(err) })
          })
          if (this.#closed) {
            closeSync(fd)
            unlinkSync(path)
            break
          }
          this.#spares.push({ fd, path })
        }
      } catch (err) {
        log('creating spare temp files stopped: %s', (err as Error).message)
      } finally {
        this.#refilling = false
      }
    })())
  }

  /** Counts a new object; a lazy one is queued to become durable. */
  #stored (hex: string, path: string, bytes: number, lazy: boolean, fd?: number): void {
    this.#objectCount++
    this.#byteCount += bytes
    if (this.#fsync && lazy) {
      // Visible now; durable shortly. A power cut before this lands can leave the object
      // empty (ext4 orders data before the size in its journal): open() removes empty objects.
      const durable = this.#track(this.#lazySync.add(path, this.#shardDir(hex), fd))
      this.#durability.add(durable)
      void durable.then(() => { this.#durability.delete(durable) }, (err: unknown) => {
        this.#durability.delete(durable)
        log.error('making %s durable: %O', hex, err)
      })
    }
  }

  async #prepare (): Promise<void> {
    await mkdir(this.#tmp, { recursive: true, mode: 0o700 })
    const leftovers = await readdir(this.#tmp)
    await Promise.all(leftovers.map(async name => { await rm(join(this.#tmp, name), { recursive: true, force: true }) }))
    await mkdir(this.#objects, { recursive: true, mode: 0o700 })
    if (this.#fsync) {
      await Promise.all([this.dir, this.#objects, this.#tmp].map(async dir => { await fsyncDir(dir) }))
    }
    for (const shard of await this.#shards()) {
      this.#shardReady.set(shard, Promise.resolve())
      this.#shardDone.add(shard)
      const names = (await readdir(join(this.#objects, shard))).filter(isObjectName)
      const sizes = await Promise.all(names.map(async name => {
        const path = join(this.#objects, shard, name)
        const { size } = await stat(path)
        if (size === 0 && this.#emptyIsTorn) {
          await unlink(path)
          log('removed an empty object %s%s (a lazy put cut off by a crash)', shard, name)
          return -1
        }
        return size
      }))
      for (const size of sizes) {
        if (size < 0) continue
        this.#objectCount++
        this.#byteCount += size
      }
    }
    log('opened %s: %d objects, %d bytes, removed %d temp files',
      this.dir, this.#objectCount, this.#byteCount, leftovers.length)
  }

  async #shards (): Promise<string[]> {
    return (await readdir(this.#objects)).filter(name => /^[0-9a-f]{2}$/.test(name)).sort()
  }

  #objectPath (hex: string): string {
    return join(this.#objects, hex.slice(0, 2), hex.slice(2))
  }

  #shardDir (hex: string): string {
    return join(this.#objects, hex.slice(0, 2))
  }

  /**
   * Makes the key's shard dir on first use; it is durable in objects/ before any put in it
   * resolves. Returns the shared promise itself, which already has a handler, so a put that
   * fails before awaiting it leaves no unhandled rejection.
   */
  #shard (hex: string): Promise<void> {
    const name = hex.slice(0, 2)
    let ready = this.#shardReady.get(name)
    if (ready === undefined) {
      ready = this.#track((async () => {
        await mkdir(join(this.#objects, name), { recursive: true, mode: 0o700 })
        if (this.#fsync) await this.#dirSync.sync(this.#objects)
        this.#shardDone.add(name)
      })())
      this.#shardReady.set(name, ready)
      void ready.catch(() => { this.#shardReady.delete(name) }) // let the next put try again
    }
    return ready
  }

  #checkOpen (options: KVOptions | undefined): void {
    if (this.#closed) throw new BazilError(ErrorCode.CLOSED, `local store ${this.dir} is closed`)
    throwIfAborted(options?.signal)
  }

  /** Keeps `op` in #pending until it settles; returns it unchanged. */
  #track<T> (op: Promise<T>): Promise<T> {
    this.#pending.add(op)
    void op.then(() => { this.#pending.delete(op) }, () => { this.#pending.delete(op) })
    return op
  }

  /** Checks state, signal and key; returns the key's hex. */
  #enter (key: Uint8Array, options: KVOptions | undefined): string {
    this.#checkOpen(options)
    if (key.byteLength < MIN_KEY_BYTES || key.byteLength > MAX_KEY_BYTES) {
      throw new BazilError(ErrorCode.INVALID, `key of ${key.byteLength} bytes (want ${MIN_KEY_BYTES}–${MAX_KEY_BYTES})`)
    }
    return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex')
  }
}

/**
 * Group commit of directory fsyncs: a caller whose change is already in a directory waits for
 * the next fsync of that directory that starts after its call; all callers waiting on one dir
 * share that fsync. One batch runs at a time; the next takes everything that queued meanwhile.
 */
class GroupDirSync {
  #waiting = new Map<string, Array<{ resolve: () => void, reject: (err: unknown) => void }>>()
  #running = false

  async sync (dir: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const waiters = this.#waiting.get(dir)
      if (waiters === undefined) this.#waiting.set(dir, [{ resolve, reject }])
      else waiters.push({ resolve, reject })
      if (!this.#running) void this.#run()
    })
  }

  async #run (): Promise<void> {
    this.#running = true
    while (this.#waiting.size > 0) {
      const batch = this.#waiting
      this.#waiting = new Map()
      await Promise.all([...batch].map(async ([dir, waiters]) => {
        try {
          await fsyncDir(dir)
          for (const waiter of waiters) waiter.resolve()
        } catch (err) {
          for (const waiter of waiters) waiter.reject(err)
        }
      }))
    }
    this.#running = false
  }
}

/**
 * Makes lazily put objects durable in the background: fdatasync of each file, then one fsync
 * per shard dir, a batch at a time and only two syncs at once, so that the fsyncs never fill
 * libuv's thread pool and stall the reads and writes a FUSE request is waiting for. While a
 * caller waits for them (fsync), eight at once: the file system's journal commits concurrent
 * syncs together (fsync after a 256 MiB write: ~1.1 s at two, see DECISIONS.md). A put may
 * hand over its file still open (fewer calls on the main thread); shard dirs stay open.
 */
class LazySync {
  /** Callers waiting for the queue to drain (flush). */
  waiting = 0
  #queue: Array<{ path: string, dir: string, fd: number | undefined, resolve: () => void, reject: (err: unknown) => void }> = []
  #running = false
  /** Open shard dirs, for their fsyncs. */
  readonly #dirFds = new Map<string, Promise<number>>()

  /** False when enough handed-over fds are waiting already (bounds open files). */
  get canTakeFd (): boolean { return this.#queue.length < 256 }

  /** Queues `path` (and its dir); `fd`, if given, is its open file, closed once synced. */
  async add (path: string, dir: string, fd?: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#queue.push({ path, dir, fd, resolve, reject })
      if (!this.#running) void this.#run()
    })
  }

  /** Closes the shard dirs (call once nothing is queued). */
  close (): void {
    for (const fd of this.#dirFds.values()) void fd.then(async fd => { await fsCall(closeCallback, fd) }).catch(() => {})
    this.#dirFds.clear()
  }

  async #run (): Promise<void> {
    this.#running = true
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, 256)
      const failed = new Map<string, unknown>()
      await inParallel(batch, () => this.waiting > 0 ? 8 : 2, async item => {
        try {
          await syncFile(item.path, item.fd)
        } catch (err) {
          failed.set(item.path, err)
        }
      })
      const dirs = [...new Set(batch.map(item => item.dir))]
      const failedDirs = new Map<string, unknown>()
      await inParallel(dirs, () => this.waiting > 0 ? 8 : 2, async dir => {
        try { await this.#syncDir(dir) } catch (err) { failedDirs.set(dir, err) }
      })
      for (const item of batch) {
        const err = failed.get(item.path) ?? failedDirs.get(item.dir)
        if (err === undefined) item.resolve()
        else item.reject(err)
      }
    }
    this.#running = false
  }

  async #syncDir (dir: string): Promise<void> {
    let fd = this.#dirFds.get(dir)
    if (fd === undefined) {
      fd = fsCall<number>(openCallback, dir, 'r')
      this.#dirFds.set(dir, fd)
    }
    try {
      await fsCall(fsyncCallback, await fd)
    } catch (err) {
      // Opened again next time (and closed now, if it was open).
      this.#dirFds.delete(dir)
      void fd.then(async fd => { await fsCall(closeCallback, fd) }).catch(() => {})
      throw err
    }
  }
}

/** fdatasync of an object, through its open fd (then closed) or by path. */
async function syncFile (path: string, fd: number | undefined): Promise<void> {
  const open = fd ?? await fsCall<number>(openCallback, path, 'r')
  try {
    await fsCall(fdatasyncCallback, open)
  } finally {
    await fsCall(closeCallback, open)
  }
}

/** A node:fs callback call as a promise (raw fds: cheaper here than FileHandle objects). */
async function fsCall<T = void> (fn: (...args: any[]) => void, ...args: unknown[]): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    fn(...args, (err: NodeJS.ErrnoException | null, value: T) => { if (err === null) resolve(value); else reject(err) })
  })
}

/** Runs fn over items with at most limit() at once (read again as each one finishes); fn must not reject. */
async function inParallel<T> (items: T[], limit: () => number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  let active = 0
  await new Promise<void>(resolve => {
    const pump = (): void => {
      while (next < items.length && active < limit()) {
        const item = items[next++] as T
        active++
        void fn(item).catch(() => {}).finally(() => { active--; pump() })
      }
      if (active === 0 && next >= items.length) resolve()
    }
    pump()
  })
}

async function fsyncDir (dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

function isObjectName (name: string): boolean {
  return name.length >= 2 && name.length % 2 === 0 && /^[0-9a-f]+$/.test(name)
}

/** Waits for `promise` unless `signal` fires first (then ABORTED; the promise runs on). */
async function raceAbort (promise: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) { await promise; return }
  throwIfAborted(signal)
  let onAbort = (): void => {}
  try {
    await Promise.race([promise, new Promise<never>((_resolve, reject) => {
      onAbort = () => { reject(new BazilError(ErrorCode.ABORTED, 'operation aborted', { cause: signal.reason })) }
      signal.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

function toKVError (err: unknown, what: string): BazilError {
  if ((err as Error)?.name === 'AbortError') {
    return new BazilError(ErrorCode.ABORTED, `${what}: aborted`, { cause: err })
  }
  return fromSystemError(err, what)
}
