/**
 * One daemon per data dir: a lock file (`<home>/daemon.lock`) holding the owner's pid (first
 * line) and, on Linux, the boot id and the process's start time (second line), so a pid reused
 * after a crash or a reboot is not mistaken for the daemon. It is created atomically with its
 * content (a temp file hard-linked into place, which fails if the lock exists); a lock whose
 * process is gone (or a zombie) is stale and taken over; a live one is LOCKED.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { BazilError, ErrorCode, fromSystemError } from '../errors.ts'
import { logger } from '../util/log.ts'

const log = logger('bazil:lock')

export interface DaemonLock {
  readonly path: string
  readonly pid: number
  /** Removes the lock if it is still ours; idempotent. */
  release: () => Promise<void>
}

/** Takes the lock for `pid` (default: this process), taking over a stale one. */
export async function acquireLock (path: string, pid = process.pid): Promise<DaemonLock> {
  const tmp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    const identity = processIdentity(pid)
    await writeFile(tmp, identity === undefined ? `${pid}\n` : `${pid}\n${identity}\n`, { mode: 0o600 })
    // A few rounds: each lost race against another taker starts over with a fresh look.
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(tmp, path)
        return makeLock(path, pid)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      const holder = await readHolder(path)
      if (holder !== undefined && holderAlive(holder)) throw lockedBy(holder.pid)
      await removeStale(path, holder)
    }
    throw new BazilError(ErrorCode.LOCKED, `could not take the lock ${path}: other processes keep racing for it`)
  } catch (err) {
    throw fromSystemError(err, `cannot take the lock ${path}`)
  } finally {
    await rm(tmp, { force: true })
  }
}

/** The pid of a live lock holder, or undefined when the lock is free or stale. */
export async function lockHolder (path: string): Promise<number | undefined> {
  const holder = await readHolder(path)
  return holder !== undefined && holderAlive(holder) ? holder.pid : undefined
}

/** Whether `pid` is a running process; a zombie (exited, not yet reaped) counts as gone. */
export function isProcessAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    // EPERM: it exists but belongs to someone else — still alive.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  const state = procStat(pid)?.[0]
  return state !== 'Z' && state !== 'X'
}

/** "<boot id> <start time>" of a process: unique across reboots and pid reuse; Linux only. */
export function processIdentity (pid: number): string | undefined {
  const startTime = procStat(pid)?.[19]
  if (startTime === undefined) return undefined
  try {
    return `${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()} ${startTime}`
  } catch {
    return undefined
  }
}

/** The fields of /proc/PID/stat after the command name: [state, ppid, ...]; undefined off Linux. */
function procStat (pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

interface Holder { pid: number, identity?: string }

function holderAlive (holder: Holder): boolean {
  if (!isProcessAlive(holder.pid)) return false
  if (holder.identity === undefined) return true
  const identity = processIdentity(holder.pid)
  return identity === undefined || identity === holder.identity
}

function lockedBy (pid: number): BazilError {
  return new BazilError(ErrorCode.LOCKED, `a daemon (pid ${pid}) is already running for this data dir`)
}

function makeLock (path: string, pid: number): DaemonLock {
  let released = false
  return {
    path,
    pid,
    release: async () => {
      if (released) return
      released = true
      if ((await readHolder(path))?.pid === pid) await rm(path, { force: true })
    }
  }
}

/**
 * Moves the stale lock aside before deleting it, so that if another process took it over since
 * we looked (its pid now in the file), we notice and put it back instead of deleting it.
 */
async function removeStale (path: string, stale: Holder | undefined): Promise<void> {
  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    await rename(path, aside)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  const moved = await readHolder(aside)
  if (moved !== undefined && moved.pid !== stale?.pid && holderAlive(moved)) {
    await link(aside, path).catch(() => {})
    await rm(aside, { force: true })
    throw lockedBy(moved.pid)
  }
  log('took over a stale lock %s (pid %s)', path, stale?.pid ?? 'unreadable')
  await rm(aside, { force: true })
}

async function readHolder (path: string): Promise<Holder | undefined> {
  let text: string
  try { text = await readFile(path, 'utf8') } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const [first = '', second = ''] = text.split('\n')
  const pid = Number.parseInt(first.trim(), 10)
  // An unreadable lock (e.g. truncated by a crash) counts as stale.
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined
  return second.trim() === '' ? { pid } : { pid, identity: second.trim() }
}
