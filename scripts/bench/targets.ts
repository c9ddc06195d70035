/**
 * The file systems the bench compares, each behind one small `Target` interface:
 *   bazil  — a Bazil daemon mounted with `bazil start --mount` (its own data dir)
 *   bindfs — bindfs over a plain directory: the FUSE baseline (libfuse 2, default options)
 *   plain  — the plain directory on the same disk, no FUSE
 * Every mount registers its own cleanup, so a failed run never leaves a mount behind.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Cleanup } from './cleanup.ts'
import { run, tryRun } from './proc.ts'

export const TARGET_NAMES = ['bazil', 'bindfs', 'plain'] as const
export type TargetName = typeof TARGET_NAMES[number]

export interface Target {
  readonly name: TargetName
  /** How this target was set up, for the report. */
  readonly setup: string
  /** Where the workloads read and write. */
  readonly dir: string
  /** Unmounts and mounts again, so no FUSE or daemon cache survives (plain: nothing to do). */
  remount: () => Promise<void>
  /** Facts worth reporting after the workloads (e.g. Bazil's stored bytes), if any. */
  stats: () => Promise<string | undefined>
  /** Unmounts and stops whatever the target started. Safe to call twice. */
  close: () => Promise<void>
}

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BAZIL_CLI = join(REPO_ROOT, 'scripts', 'bazil.mjs')

export async function openTarget (name: TargetName, workDir: string, cleanup: Cleanup): Promise<Target> {
  switch (name) {
    case 'plain': return await openPlain(workDir)
    case 'bindfs': return await openBindfs(workDir, cleanup)
    case 'bazil': return await openBazil(workDir, cleanup)
  }
}

async function openPlain (workDir: string): Promise<Target> {
  const dir = join(workDir, 'plain')
  await mkdir(dir, { recursive: true })
  return {
    name: 'plain',
    setup: 'the plain directory (no FUSE)',
    dir,
    remount: async () => {},
    stats: async () => undefined,
    close: async () => {}
  }
}

async function openBindfs (workDir: string, cleanup: Cleanup): Promise<Target> {
  const source = join(workDir, 'bindfs-src')
  const dir = join(workDir, 'bindfs-mnt')
  await mkdir(source, { recursive: true })
  await mkdir(dir, { recursive: true })
  const mount = async (): Promise<void> => { await run('bindfs', [source, dir], { timeoutMs: 30_000 }) }
  await mount()
  const close = cleanup.defer('unmount bindfs', async () => { await unmount(dir) })
  return {
    name: 'bindfs',
    setup: '`bindfs SRC MNT` over a plain directory',
    dir,
    remount: async () => { await unmount(dir); await mount() },
    stats: async () => undefined,
    close
  }
}

async function openBazil (workDir: string, cleanup: Cleanup): Promise<Target> {
  const home = join(workDir, 'bazil-home')
  const dir = join(workDir, 'bazil-mnt')
  await mkdir(dir, { recursive: true })
  const env = { ...process.env, BAZIL_HOME: home }
  const bazil = async (...args: string[]): Promise<string> =>
    (await run(process.execPath, [BAZIL_CLI, ...args], { env, timeoutMs: 60_000, cwd: REPO_ROOT })).stdout
  let pid: number | undefined

  const start = async (): Promise<void> => {
    await bazil('start', '--mount', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns')
    pid = (await bazilStatus(bazil)).pid
    if (!(await isMounted(dir))) throw new Error(`bazil start returned but ${dir} is not mounted`)
  }
  const stop = async (): Promise<void> => {
    const stopped = await tryRun(process.execPath, [BAZIL_CLI, 'stop'], { env, timeoutMs: 60_000 })
    // Whatever `stop` left behind: the daemon we started (by its pid) and its mount.
    if (pid !== undefined && isAlive(pid)) process.kill(pid, 'SIGKILL')
    if (await isMounted(dir)) await unmount(dir)
    pid = undefined
    if (!stopped) throw new Error('bazil stop failed')
  }

  await bazil('init')
  await start()
  const close = cleanup.defer('stop bazil', stop)
  return {
    name: 'bazil',
    setup: '`bazil init`, `bazil start --mount MNT` with its own BAZIL_HOME on the same disk',
    dir,
    remount: async () => { await stop(); await start() },
    stats: async () => {
      const status = await bazilStatus(bazil)
      const parts = [`${status.chunks ?? '?'} chunks`]
      if (typeof status.storedBytes === 'number') parts.push(`${mib(status.storedBytes)} MiB stored`)
      if (typeof status.logicalBytes === 'number') parts.push(`${mib(status.logicalBytes)} MiB logical`)
      return `\`bazil status\` after the run: ${parts.join(', ')}`
    },
    close
  }
}

interface BazilStatus { pid?: number, chunks?: number, storedBytes?: number, logicalBytes?: number }

async function bazilStatus (bazil: (...args: string[]) => Promise<string>): Promise<BazilStatus> {
  const text = await bazil('status', '--json')
  try {
    return JSON.parse(text) as BazilStatus
  } catch {
    throw new Error(`bazil status --json printed something that is not JSON: ${text.slice(0, 200)}`)
  }
}

function mib (bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1)
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** True when `dir` is a mount point (per /proc/mounts, which escapes spaces as \040). */
export async function isMounted (dir: string): Promise<boolean> {
  const mounts = await readFile('/proc/mounts', 'utf8')
  const escaped = dir.replace(/ /g, '\\040')
  return mounts.split('\n').some(line => line.split(' ')[1] === escaped)
}

/** Unmounts a FUSE mount; falls back to a lazy unmount when it is busy or dead. */
export async function unmount (dir: string): Promise<void> {
  if (await tryRun('fusermount', ['-u', dir], { timeoutMs: 30_000 })) return
  if (!(await isMounted(dir))) return
  if (await tryRun('fusermount', ['-uz', dir], { timeoutMs: 30_000 })) return
  await run('umount', ['-l', dir], { timeoutMs: 30_000 })
}
