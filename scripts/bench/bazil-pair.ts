/**
 * Two Bazil daemons paired over loopback for the sync run, the way a user pairs two devices:
 * `bazil init` and `bazil start --mount` on A, `bazil invite --json` on A, `bazil --home B join
 * CODE` and `bazil start --mount` on B; both listen on 127.0.0.1 only, without mDNS. `syncWait`
 * is `bazil sync --wait` through the control socket (what the CLI sends, without the ~0.5 s it
 * takes to start a CLI process). Daemons and mounts are registered with the run's cleanup.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { connectControl } from '../../src/node/control.ts'
import type { SyncReport } from '../../src/node/api.ts'
import type { Cleanup } from './cleanup.ts'
import { run, tryRun } from './proc.ts'
import { isMounted, unmount } from './targets.ts'

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BAZIL_CLI = join(REPO_ROOT, 'scripts', 'bazil.mjs')
/** A hang guard for `sync --wait`, not a speed limit. */
const SYNC_GUARD_MS = 600_000

export interface BazilNode {
  name: string
  home: string
  mount: string
  cli: (...args: string[]) => Promise<string>
  /** `bazil sync --wait` over the control socket; resolves once every connected peer is caught up. */
  syncWait: () => Promise<SyncReport>
}

export interface BazilPair { a: BazilNode, b: BazilNode }

export async function startBazilPair (dir: string, cleanup: Cleanup): Promise<BazilPair> {
  const a = await node('A', join(dir, 'a'), cleanup)
  await a.cli('init')
  await a.start()
  const { code } = JSON.parse(await a.cli('invite', '--json')) as { code: string }
  const b = await node('B', join(dir, 'b'), cleanup)
  await b.cli('join', code, '--json')
  await b.start()
  return { a: a.node, b: b.node }
}

async function node (name: string, dir: string, cleanup: Cleanup): Promise<{ node: BazilNode, cli: BazilNode['cli'], start: () => Promise<void> }> {
  const home = join(dir, 'home')
  const mount = join(dir, 'mnt')
  await mkdir(mount, { recursive: true })
  const env = { ...process.env, BAZIL_HOME: home }
  const cli = async (...args: string[]): Promise<string> =>
    (await run(process.execPath, [BAZIL_CLI, ...args], { env, timeoutMs: 120_000, cwd: REPO_ROOT })).stdout
  let pid: number | undefined
  const start = async (): Promise<void> => {
    await cli('start', '--mount', mount, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns')
    cleanup.defer(`stop Bazil ${name}`, async () => {
      const stopped = await tryRun(process.execPath, [BAZIL_CLI, 'stop'], { env, timeoutMs: 60_000 })
      if (pid !== undefined && isAlive(pid)) process.kill(pid, 'SIGKILL')
      if (await isMounted(mount)) await unmount(mount)
      if (!stopped) throw new Error(`bazil stop (${name}) failed`)
    })
    pid = (JSON.parse(await cli('status', '--json')) as { pid?: number }).pid
    if (!(await isMounted(mount))) throw new Error(`bazil start returned but ${mount} is not mounted`)
  }
  const syncWait = async (): Promise<SyncReport> => {
    const client = await connectControl(join(home, 'control.sock'))
    try {
      return await client.syncStatus({ timeoutMs: SYNC_GUARD_MS }, { timeoutMs: SYNC_GUARD_MS + 5_000 })
    } finally {
      client.close()
    }
  }
  return { node: { name, home, mount, cli, syncWait }, cli, start }
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
