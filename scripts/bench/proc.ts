/**
 * Process and timing helpers shared by the bench runs: run a command with a deadline, time a
 * piece of work, race it against a deadline, flush and drop the kernel's caches.
 */
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'

export interface RunResult { stdout: string, stderr: string }

/** Runs a command (no shell) and resolves with its output; rejects on non-zero exit or timeout. */
export async function run (cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv, timeoutMs?: number, cwd?: string } = {}): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    execFile(cmd, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      timeout: options.timeoutMs ?? 120_000,
      killSignal: 'SIGKILL',
      maxBuffer: 16 << 20
    }, (error, stdout, stderr) => {
      if (error !== null) {
        const detail = String(stderr).trim().split('\n').slice(-3).join(' | ')
        reject(new Error(`${cmd} ${args.join(' ')} failed: ${error.message.split('\n')[0] ?? ''}${detail !== '' ? ` (${detail})` : ''}`))
      } else {
        resolve({ stdout: String(stdout), stderr: String(stderr) })
      }
    })
  })
}

/** Like `run`, but never rejects: for best-effort cleanup. */
export async function tryRun (cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<boolean> {
  try {
    await run(cmd, args, options)
    return true
  } catch {
    return false
  }
}

/** Seconds elapsed since `start` (a `process.hrtime.bigint()` value). */
export function secondsSince (start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9
}

/** The error `withDeadline` rejects with, so a caller can tell "too slow" from "broken". */
export class DeadlineError extends Error {
  constructor (what: string, readonly seconds: number) {
    super(`${what} took longer than ${seconds} s`)
  }
}

/**
 * Rejects with a DeadlineError after `ms` if `work` has not settled. The work itself is not
 * cancelled (a blocked FUSE call cannot be); the caller's cleanup unmounts, which makes the
 * blocked call fail.
 */
export async function withDeadline<T> (what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new DeadlineError(what, Math.round(ms / 1000))) }, ms)
  })
  try {
    return await Promise.race([work, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** Writes back all dirty data of every file system (`sync`). */
export async function syncAll (): Promise<void> {
  await run('sync', [], { timeoutMs: 300_000 })
}

/**
 * Flushes, then drops the page cache, dentries and inodes so the next read comes from the
 * backing store. Needs root; returns false (and drops nothing) otherwise.
 */
export async function dropCaches (): Promise<boolean> {
  await syncAll()
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3\n')
    return true
  } catch {
    return false
  }
}
