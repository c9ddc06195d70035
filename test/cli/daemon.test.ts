/**
 * The daemon's process life through the real CLI and a real FUSE mount: background start,
 * status, stop (process, mount, lock and socket all gone); one daemon per data dir; foreground
 * mode stopping cleanly on SIGTERM; and a start that fails early reporting its log.
 */
import { describe, it, expect, onTestFinished } from 'vitest'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { bazilCli, exec, forceUnmount, isMounted, requireFuse } from '../helpers/mount.ts'
import type { RunResult } from '../helpers/mount.ts'
import { isProcessAlive } from '../../src/node/lock.ts'
import { tmpDir } from '../helpers/tmp.ts'

/** Daemons in tests listen on loopback only and do not announce themselves on the LAN. */
const LOOPBACK = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns']

interface Setup { home: string, mount: string, run: (args: string[]) => Promise<RunResult> }

async function setup (): Promise<Setup> {
  const home = join(await tmpDir('bazil-home-'), 'home')
  const mount = join(await tmpDir('bazil-mnt-'), 'mnt')
  const run = async (args: string[]): Promise<RunResult> =>
    await exec(process.execPath, [bazilCli, ...args], { env: { ...process.env, BAZIL_HOME: home, BAZIL_MOUNT: mount, DEBUG: '' } })
  onTestFinished(async () => {
    const pid = await readFile(join(home, 'daemon.lock'), 'utf8').then(text => Number.parseInt(text, 10), () => undefined)
    if (pid !== undefined && isProcessAlive(pid)) {
      await run(['stop'])
      if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL')
    }
    await forceUnmount(mount)
  })
  return { home, mount, run }
}

describe.runIf(requireFuse('bazil'))('bazil daemon', () => {
  it('starts in the background, answers status, and stops cleanly', async () => {
    const { home, mount, run } = await setup()
    const start = await run(['start', '--init', ...LOOPBACK])
    expect(start.code, start.stderr).toBe(0)
    expect(start.stdout).toContain(`mounted at ${mount}`)
    expect(isMounted(mount)).toBe(true)
    const status = JSON.parse((await run(['status', '--json'])).stdout) as { pid: number, mount: string, home: string }
    expect(status).toMatchObject({ mount, home })
    expect(isProcessAlive(status.pid)).toBe(true)
    expect((await readFile(join(home, 'daemon.lock'), 'utf8')).split('\n')[0]).toBe(String(status.pid))
    expect((await stat(join(home, 'control.sock'))).mode & 0o777).toBe(0o600)

    const again = await run(['start', ...LOOPBACK])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain(`a daemon (pid ${status.pid}) is already running`)

    const stop = await run(['stop'])
    expect(stop.code, stop.stderr).toBe(0)
    expect(stop.stdout).toContain(`pid ${status.pid}`)
    expect(isProcessAlive(status.pid)).toBe(false)
    expect(isMounted(mount)).toBe(false)
    expect(existsSync(join(home, 'daemon.lock'))).toBe(false)
    expect(existsSync(join(home, 'control.sock'))).toBe(false)
    expect(await readFile(join(home, 'daemon.log'), 'utf8')).toMatch(/ready[\s\S]*stopping[\s\S]*stopped/)
    expect((await run(['status'])).code).toBe(4)
  })

  it('runs in the foreground until SIGTERM, then unmounts and exits 0', async () => {
    const { home, mount } = await setup()
    const child = spawn(process.execPath, [bazilCli, 'start', '--foreground', '--init', ...LOOPBACK], {
      env: { ...process.env, BAZIL_HOME: home, BAZIL_MOUNT: mount, DEBUG: '' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    const exited = once(child, 'exit')
    await expect.poll(() => stdout, { timeout: 30_000 }).toContain('Bazil is running')
    expect(isMounted(mount)).toBe(true)
    await writeFile(join(mount, 'hello.txt'), 'hi')
    child.kill('SIGTERM')
    const [code] = await exited as [number | null]
    expect(code).toBe(0)
    expect(stdout).toContain('Bazil stopped')
    expect(isMounted(mount)).toBe(false)
    expect(existsSync(join(home, 'daemon.lock'))).toBe(false)
  })

  it('reports a daemon that dies before it is ready, with its log', async () => {
    const first = await setup()
    expect((await first.run(['start', '--init', ...LOOPBACK])).code).toBe(0)
    // A second data dir asked to mount over the first one's live mount: the daemon refuses.
    const second = await setup()
    expect((await second.run(['init'])).code).toBe(0)
    const result = await exec(process.execPath, [bazilCli, 'start', '--mount', first.mount, ...LOOPBACK], {
      env: { ...process.env, BAZIL_HOME: second.home, DEBUG: '' }
    })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('before it was ready')
    expect(result.stderr).toContain('already a mount point')
    expect(isMounted(first.mount)).toBe(true)
  })
})
