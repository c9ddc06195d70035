/**
 * One daemon per data dir: a lock file (`<home>/daemon.lock`) holding the owner's pid (first
 * line) and, on Linux, the boot id and the process's start time (second line), so a pid reused
 * after a crash or a reboot is not mistaken for the daemon. It is created atomically with its
 * content (a temp file hard-linked into place, which fails if the lock exists); a lock whose
 * process is gone (or a zombie) is stale and taken over; a live one is LOCKED.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { link, readFile, rm, stat, writeFile } from 'node:fs/promises'
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
    for (let attempt = 0; attempt < 50; attempt++) {
      if (await tryLink(tmp, path)) return makeLock(path, pid)
      const holder = await readHolder(path)
      if (holder !== undefined && holderAlive(holder)) throw lockedBy(holder.pid)
      await takeOverStale(tmp, path)
    }
    throw new BazilError(ErrorCode.LOCKED, `could not take the lock ${path}: other processes keep racing for it`)
  } catch (err) {
    throw fromSystemError(err, `cannot take the lock ${path}`)
  } finally {
    await rm(tmp, { force: true })
  }
}

async function tryLink (from: string, to: string): Promise<boolean> {
  try {
    await link(from, to)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  }
}

/**
 * Removes a stale lock. Only the holder of `<lock>.takeover` may remove it, so two processes
 * can never both remove a lock (one of them the other's fresh one). Whoever then links first
 * wins; the others find a live holder on their next look. A takeover file older than a few
 * seconds was left by a crash in this short window and is cleared.
 */
async function takeOverStale (tmp: string, path: string): Promise<void> {
  const takeover = `${path}.takeover`
  if (!await tryLink(tmp, takeover)) {
    const age = await stat(takeover).then(st => Date.now() - st.mtimeMs, () => 0)
    if (age > 5000) await rm(takeover, { force: true })
    await new Promise(resolve => setTimeout(resolve, 5 + Math.random() * 20))
    return
  }
  try {
    const holder = await readHolder(path)
    if (holder === undefined || !holderAlive(holder)) {
      await rm(path, { force: true })
      log('took over a stale lock %s (pid %s)', path, holder?.pid ?? 'unreadable')
    }
  } finally {
    await rm(takeover, { force: true })
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
