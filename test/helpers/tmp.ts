/**
 * Temporary directories for tests, each removing itself: after the current test when made
 * inside one, otherwise after the enclosing suite (or file). A sweep when the worker exits (or
 * is ended by vitest's SIGTERM) catches any dir a hook could not reach, e.g. one made inside
 * `beforeAll`, where vitest silently ignores new hooks.
 *
 * - `tmpDir()`: a fresh dir under os.tmpdir().
 * - `tmpfsDir(size)`: a fresh tmpfs of a given size (for ENOSPC tests); needs root, so it
 *   resolves to `{ unavailable: reason }` where mounting is not permitted.
 */
import { execFile } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, onTestFinished } from 'vitest'

const run = promisify(execFile)
const leftovers = new Set<string>()
let exitSweepInstalled = false

export async function tmpDir (prefix = 'bazil-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  leftovers.add(dir)
  installExitSweep()
  afterward(async () => {
    // Errors propagate on purpose: a dir that cannot be removed (say, a mount left on it) is
    // a bug in the test that made it.
    await rm(dir, { recursive: true, force: true, maxRetries: 3 })
    leftovers.delete(dir)
  })
  return dir
}

/** `size` as mount(8) takes it, e.g. '1m'. Unmounted before the dir is removed. */
export async function tmpfsDir (size: string): Promise<{ dir: string } | { unavailable: string }> {
  const dir = await tmpDir('bazil-tmpfs-')
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir])
  } catch (err) {
    return { unavailable: `cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): ${(err as Error).message.trim()}` }
  }
  // Registered after tmpDir's removal, so it runs before it (cleanups run in reverse order).
  afterward(async () => {
    try {
      await run('umount', [dir])
    } catch (err) {
      // Still busy (a leaked fd): detach it anyway so no mount outlives the test, then report.
      await run('umount', ['-l', dir])
      throw err
    }
  })
  return { dir }
}

/** Runs `cleanup` after the current test, or after the suite being collected. */
function afterward (cleanup: () => Promise<void>): void {
  try {
    onTestFinished(cleanup)
  } catch {
    try { afterAll(cleanup) } catch { /* neither: the exit sweep removes tmp dirs */ }
  }
}

function installExitSweep (): void {
  if (exitSweepInstalled) return
  exitSweepInstalled = true
  process.once('exit', sweep)
  // vitest ends its fork workers with SIGTERM, which skips 'exit': sweep, then, if nobody else
  // handles the signal, raise it again so the process still dies of it as it would have.
  process.once('SIGTERM', signal => {
    sweep()
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
  })
}

function sweep (): void {
  for (const dir of leftovers) {
    try { rmSync(dir, { recursive: true, force: true }) } catch { /* best effort at exit */ }
  }
  leftovers.clear()
}
