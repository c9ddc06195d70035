/**
 * The SFTP store: a KV in a directory of an SSH account (`sftp://user@host:port/path`), over one
 * SSH connection (src/kv/sftp-session.ts) that carries every request, at most `concurrency`
 * operations at a time, each with chunk requests pipelined. Key authentication only; the host
 * key is pinned or trusted on first use through a callback, never silently.
 *
 * Layout under `path` (the same as the local store):
 *
 *   path/objects/<hh>/<rest>   an object; <hh><rest> is the lowercase hex of its key. Holds the
 *                              value's bytes exactly. A shard dir is made on its first put.
 *   path/tmp/<hex>.<id>.<n>    a put in progress (<id> is random per opened store, so several
 *                              machines can share one store). Leftovers older than a day are
 *                              removed on open.
 *
 * A put writes the temp file, fsyncs it (fsync@openssh.com, when the server has it), closes it
 * and renames it into place with posix-rename@openssh.com: the commit point, so a reader sees no
 * object or the whole one. SFTP cannot fsync a directory: after a power cut on the server a put
 * may be undone, never torn. A put of a key already stored costs one stat.
 *
 * Failures: a dropped connection fails the calls in flight with UNAVAILABLE at once and the next
 * call reconnects; a call with no answer within `timeoutMs` fails with TIMEOUT; a host key
 * mismatch or a refused key is PERMISSION.
 */
import { randomBytes } from 'node:crypto'
import { posix } from 'node:path'
import type { FileEntry } from 'ssh2'
import { BazilError, ErrorCode, isBazilError } from '../errors.ts'
import { logger } from '../util/log.ts'
import type { FullKV, KVOptions } from './kv.ts'
import { Deadline, mapLimit, Slots } from './sftp-calls.ts'
import { exists, makeDir, makeDirs, readdir, readWhole, remove, rename, writeNew } from './sftp-files.ts'
import { parsePinned, SftpSession } from './sftp-session.ts'
import type { HostKey, HostKeyPolicy } from './sftp-session.ts'

export type { HostKey, HostKeyPolicy } from './sftp-session.ts'

const log = logger('bazil:kv:sftp')

export interface SftpStoreConfig {
  host: string
  port: number
  username: string
  /** OpenSSH (or PEM) private key; no passphrase. */
  privateKey: Buffer | string
  /** The store's directory: absolute, or relative to the account's home. Made if missing. */
  path: string
  hostKey: HostKeyPolicy
  /** Deadline of each call (and of connecting). Default 30 s. */
  timeoutMs?: number
  /** Operations sharing the connection at once. Default 16. */
  concurrency?: number
  /** fsync each object before it is renamed into place. Default true. */
  fsync?: boolean
}

const DEFAULT_TIMEOUT_MS = 30_000
/** How long close() waits for abandoned calls to clean up before it disconnects. */
const CLEANUP_GRACE_MS = 5_000
const DEFAULT_CONCURRENCY = 16
/** Shards listed at once by stat(). */
const LIST_CONCURRENCY = 8
const TEMP_MAX_AGE_S = 24 * 60 * 60
const MIN_KEY_BYTES = 2
const MAX_KEY_BYTES = 127

export class SftpStore implements FullKV {
  readonly where: string
  readonly #config: SftpStoreConfig
  readonly #timeoutMs: number
  readonly #fsync: boolean
  readonly #slots: Slots
  readonly #objects: string
  readonly #tmp: string
  readonly #instance = randomBytes(4).toString('hex')
  /** Everything in progress: calls, their bodies (which run on to clean up) and connecting. */
  readonly #pending = new Set<Promise<unknown>>()
  /** Calls whose callers still wait for the answer. */
  readonly #calls = new Set<Promise<unknown>>()
  /** Puts in progress by key hex: a second put or a delete of the key waits for it. */
  readonly #inflight = new Map<string, Promise<void>>()
  #current: SftpSession | undefined
  #connecting: Promise<SftpSession> | undefined
  /** The host key trusted on first use, pinned for this store's later reconnects. */
  #trusted: string | undefined
  #tmpSeq = 0
  #closed = false

  private constructor (config: SftpStoreConfig) {
    this.#config = config
    this.#timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS
    this.#fsync = config.fsync ?? true
    this.#slots = new Slots(config.concurrency ?? DEFAULT_CONCURRENCY)
    const root = config.path.length > 1 ? config.path.replace(/\/+$/, '') : config.path
    this.#objects = posix.join(root, 'objects')
    this.#tmp = posix.join(root, 'tmp')
    this.where = `sftp://${config.username}@${config.host}:${config.port}${root.startsWith('/') ? '' : '/~/'}${root}`
  }

  /** Connects (verifying the host key), makes the store's dirs and sweeps old temp files. */
  static async open (config: SftpStoreConfig, options?: KVOptions): Promise<SftpStore> {
    if (config.hostKey.known !== undefined) parsePinned(config.hostKey.known) // INVALID early
    if (config.path === '') throw new BazilError(ErrorCode.INVALID, 'sftp store: empty path')
    const store = new SftpStore(config)
    try {
      await store.#run('open', options, async (session, deadline) => {
        await makeDirs(session, store.#objects)
        await makeDirs(session, store.#tmp)
        await store.#sweepTemp(session, deadline)
      })
    } catch (err) {
      await store.close()
      throw err
    }
    log('opened %s', store.where)
    return store
  }

  /**
   * Refuses new calls with CLOSED, lets calls in progress finish (up to the deadline), disconnects.
   * A call its caller gave up on (aborted) gets only CLEANUP_GRACE_MS more to clean up (close its
   * handle, remove its temp file: milliseconds on a server that answers): one that stopped
   * answering must not hold up whoever closes the store (a daemon that is stopping) for the
   * whole deadline. A temp file left then is removed by a later open's sweep.
   */
  async close (): Promise<void> {
    this.#closed = true
    const deadline = Date.now() + this.#timeoutMs
    await settledWithin(this.#calls, this.#timeoutMs)
    await settledWithin(this.#pending, Math.min(CLEANUP_GRACE_MS, Math.max(0, deadline - Date.now())))
    this.#current?.end() // anything still waiting on the server now fails with UNAVAILABLE
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending])
    this.#current?.end()
  }

  async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    const hex = this.#enter(key, options)
    return await this.#run(`get ${hex}`, options, async (session, deadline) => {
      return await readWhole(session, this.#objectPath(hex), `get ${hex}`, deadline.signal)
    })
  }

  async put (key: Uint8Array, value: Uint8Array, options?: KVOptions): Promise<void> {
    const hex = this.#enter(key, options)
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
    await this.#run(`put ${hex}`, options, async (session, deadline) => {
      await this.#afterPutOf(hex)
      deadline.check()
      const work = this.#put(session, deadline, hex, bytes)
      this.#inflight.set(hex, work)
      try {
        await work
      } finally {
        if (this.#inflight.get(hex) === work) this.#inflight.delete(hex)
      }
    })
  }

  async has (key: Uint8Array, options?: KVOptions): Promise<boolean> {
    const hex = this.#enter(key, options)
    return await this.#run(`has ${hex}`, options, async session => await exists(session, this.#objectPath(hex), `has ${hex}`))
  }

  async delete (key: Uint8Array, options?: KVOptions): Promise<void> {
    const hex = this.#enter(key, options)
    await this.#run(`delete ${hex}`, options, async (session, deadline) => {
      await this.#afterPutOf(hex)
      deadline.check()
      await remove(session, this.#objectPath(hex), `delete ${hex}`)
    })
  }

  /** Lists shard by shard: one READDIR exchange per shard, nothing held in memory. */
  async * keys (options?: KVOptions): AsyncIterable<Uint8Array> {
    for (const shard of await this.#shards(options)) {
      for (const entry of await this.#list(shard, options)) yield Buffer.from(shard + entry.filename, 'hex')
    }
  }

  /**
   * Counts by scanning: lists objects/ and every shard (up to 257 directory listings, several
   * at a time; each object's name and attributes cross the wire), so it costs time in
   * proportion to the objects held. Meant for `bazil store list`, not for a hot path. Objects
   * put by another machine sharing the store are counted too.
   */
  async stat (options?: KVOptions): Promise<{ objects: number, bytes: number }> {
    const shards = await this.#shards(options)
    const lists = await mapLimit(shards, LIST_CONCURRENCY, async shard => await this.#list(shard, options))
    let objects = 0
    let bytes = 0
    for (const entry of lists.flat()) {
      objects++
      bytes += entry.attrs.size
    }
    return { objects, bytes }
  }

  async #put (session: SftpSession, deadline: Deadline, hex: string, value: Buffer): Promise<void> {
    const what = `put ${hex}`
    const path = this.#objectPath(hex)
    if (await exists(session, path, what)) return // content addressing: the same value
    const temp = posix.join(this.#tmp, `${hex}.${this.#instance}.${this.#tmpSeq++}`)
    await writeNew(session, temp, value, this.#fsync, what, deadline.signal)
    try {
      deadline.check() // past the rename there is no abort: it is the commit point
      await this.#commit(session, temp, path, what)
    } catch (err) {
      await remove(session, temp, what).catch(() => {}) // gone with the connection: swept on a later open
      throw err
    }
  }

  /** Renames the temp file into place, making the shard dir if that is what was missing. */
  async #commit (session: SftpSession, temp: string, path: string, what: string): Promise<void> {
    try {
      await rename(session, temp, path, what)
    } catch (err) {
      if (!isBazilError(err, ErrorCode.NOT_FOUND)) throw err
      await makeDir(session, posix.dirname(path))
      await rename(session, temp, path, what)
    }
  }

  async #afterPutOf (hex: string): Promise<void> {
    for (let running = this.#inflight.get(hex); running !== undefined; running = this.#inflight.get(hex)) {
      await running.catch(() => {})
    }
  }

  async #shards (options: KVOptions | undefined): Promise<string[]> {
    const entries = await this.#run('list shards', options, async session => await readdir(session, this.#objects, 'list shards'))
    return entries.map(entry => entry.filename).filter(name => /^[0-9a-f]{2}$/.test(name)).sort()
  }

  async #list (shard: string, options: KVOptions | undefined): Promise<FileEntry[]> {
    const entries = await this.#run(`list shard ${shard}`, options, async session => {
      return await readdir(session, posix.join(this.#objects, shard), `list shard ${shard}`).catch((err: unknown) => {
        if (isBazilError(err, ErrorCode.NOT_FOUND)) return [] // removed by another machine
        throw err
      })
    })
    return entries.filter(entry => isObjectName(entry.filename))
  }

  /** Removes temp files older than a day: puts cut off by a crash, here or on another machine. */
  async #sweepTemp (session: SftpSession, deadline: Deadline): Promise<void> {
    const cutoff = Date.now() / 1000 - TEMP_MAX_AGE_S
    const old = (await readdir(session, this.#tmp, 'sweep tmp')).filter(entry => entry.attrs.mtime < cutoff)
    for (const entry of old) {
      deadline.check()
      await remove(session, posix.join(this.#tmp, entry.filename), 'sweep tmp').catch((err: unknown) => {
        log.error('removing old temp file %s: %O', entry.filename, err)
      })
    }
    if (old.length > 0) log('removed %d old temp files', old.length)
  }

  /**
   * Runs one operation: connects if needed, takes a slot, runs `body`. The caller's promise
   * settles at the deadline (or abort) at the latest; the body runs on to clean up (close its
   * handle, remove its temp file) and keeps its slot until it has.
   */
  async #run<T> (what: string, options: KVOptions | undefined, body: (session: SftpSession, deadline: Deadline) => Promise<T>): Promise<T> {
    this.#checkOpen(options)
    const deadline = new Deadline(`sftp ${what}`, this.#timeoutMs, options?.signal)
    return await this.#track((async () => {
      try {
        const session = await deadline.race(this.#session())
        const release = await this.#slots.acquire(deadline.signal)
        const work = this.#track((async () => {
          try {
            return await body(session, deadline)
          } finally {
            release()
          }
        })())
        return await deadline.race(work)
      } finally {
        deadline.dispose()
      }
    })(), this.#calls)
  }

  async #session (): Promise<SftpSession> {
    if (this.#current?.alive === true) return this.#current
    this.#connecting ??= this.#track((async () => {
      try {
        const session = await SftpSession.connect({ ...this.#config, hostKey: this.#hostKeyPolicy(), timeoutMs: this.#timeoutMs })
        if (this.#closed) {
          session.end()
          throw new BazilError(ErrorCode.CLOSED, `${this.where} is closed`)
        }
        this.#current = session
        return session
      } finally {
        this.#connecting = undefined
      }
    })())
    return await this.#connecting
  }

  #hostKeyPolicy (): HostKeyPolicy {
    const { known, onFirstUse } = this.#config.hostKey
    if (known !== undefined || this.#trusted !== undefined) return { known: known ?? this.#trusted }
    if (onFirstUse === undefined) return {}
    return {
      onFirstUse: async (key: HostKey) => {
        await onFirstUse(key)
        this.#trusted = key.publicKey
      }
    }
  }

  #objectPath (hex: string): string {
    return posix.join(this.#objects, hex.slice(0, 2), hex.slice(2))
  }

  #checkOpen (options: KVOptions | undefined): void {
    if (this.#closed) throw new BazilError(ErrorCode.CLOSED, `${this.where} is closed`)
    if (options?.signal?.aborted === true) throw new BazilError(ErrorCode.ABORTED, 'operation aborted', { cause: options.signal.reason })
  }

  /** Keeps `op` in #pending (and in `also`) until it settles; returns it unchanged. */
  #track<T> (op: Promise<T>, also?: Set<Promise<unknown>>): Promise<T> {
    const sets = also === undefined ? [this.#pending] : [this.#pending, also]
    for (const set of sets) set.add(op)
    void op.then(() => { for (const set of sets) set.delete(op) }, () => { for (const set of sets) set.delete(op) })
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

/** Resolves once everything now in `ops` has settled, or after `ms`. */
async function settledWithin (ops: Set<Promise<unknown>>, ms: number): Promise<void> {
  let guard: NodeJS.Timeout | undefined
  await Promise.race([Promise.allSettled([...ops]), new Promise(resolve => { guard = setTimeout(resolve, ms) })])
  clearTimeout(guard)
}

function isObjectName (name: string): boolean {
  return name.length >= 2 && name.length % 2 === 0 && /^[0-9a-f]+$/.test(name)
}
