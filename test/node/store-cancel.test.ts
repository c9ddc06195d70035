/**
 * Stopping the daemon while work waits on a slow or hung store (issue 5: cancellation reaches
 * every layer), end to end through the CLI and the mount against the real servers: `bazil stop`
 * during a `bazil get /` from an S3 behind a slow proxy, during a `bazil push / STORE` to an
 * SFTP server whose sessions are frozen, during replication to an S3 that never answers, and
 * while a read through the mount waits on that S3. Each time the daemon goes, the mount goes,
 * whatever was waiting ends with an error (no hang, no success claimed), and after a restart
 * with the store healthy the work finishes: get and push complete, the backlog drains, `check`
 * passes.
 *
 * Time bounds here only guard against hangs; none judges speed.
 */
import { randomBytes } from 'node:crypto'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { exec, isMounted, requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import type { BazilMount, RunResult } from '../helpers/mount.ts'
import { startLatencyProxy } from '../helpers/latency-proxy.ts'
import { sharedRgw } from '../helpers/rgw.ts'
import { requireSshd, startSshd } from '../helpers/sshd.ts'
import { addS3, addSftp, backlog, dropLocalCopies, json, replicated, until } from '../helpers/stores.ts'
import { isProcessAlive } from '../../src/node/lock.ts'

const kind = testTarget()
const rgw = await sharedRgw()
const TEST_GUARD_MS = 120_000
/** `bazil stop` must not wait for a hung store; this bounds a hang, it is not a speed target. */
const STOP_GUARD_MS = 30_000
/** A store that never answers while a test runs. */
const HUNG_MS = 600_000

interface Transfer { files: number, objects: number, missing: number, bytes: number }

/** Runs `bazil stop` and checks what a user sees: it returns, the process and the mount are gone. */
async function stopDaemon (node: BazilMount): Promise<void> {
  const pid = await node.pid()
  const started = Date.now()
  const stopped = await node.run(['stop'])
  expect(stopped.code, stopped.stderr).toBe(0)
  expect(Date.now() - started).toBeLessThan(STOP_GUARD_MS)
  expect(isProcessAlive(pid)).toBe(false)
  expect(isMounted(node.mount)).toBe(false)
}

/** A command cut off by the stop: it failed (exit 1, not "interrupted"), said why, and printed no report. */
function expectCutOff (result: RunResult): void {
  expect(result.code, result.stdout).toBe(1)
  expect(result.stderr).not.toBe('')
  expect(result.stdout).toBe('')
}

/** Puts in progress in the local store's tmp dir (its spare, empty temp files aside). */
async function partialPuts (node: BazilMount): Promise<string[]> {
  return (await readdir(join(node.home, 'store', 'tmp'))).filter(name => !name.startsWith('spare.'))
}

async function writeFiles (node: BazilMount, count: number, bytes: number): Promise<void> {
  for (let i = 0; i < count; i++) await writeFile(join(node.mount, `f${i}.bin`), randomBytes(bytes + i))
}

/** Objects a store dir (local or SFTP) holds, counted on disk: no CLI round trip per poll. */
async function objectsIn (storeDir: string): Promise<number> {
  const entries = await readdir(join(storeDir, 'objects'), { recursive: true, withFileTypes: true }).catch(() => [])
  return entries.filter(entry => entry.isFile()).length
}

describe.runIf(kind === 'bazil' && requireFuse('bazil') && requireSshd() && !('unavailable' in rgw))('bazil stop cancels work waiting on stores', () => {
  it('stop during `get /` from a slow S3: get fails, nothing partial stays, a restarted get resumes and check passes', async () => {
    if ('unavailable' in rgw) return
    const proxy = await startLatencyProxy(rgw.endpoint)
    const node = await startBazil()
    await addS3(node, 'cloud', rgw, proxy.url)
    await writeFiles(node, 2, 2 * 1024 * 1024)
    await replicated(node)
    await dropLocalCopies(node)

    proxy.latencyMs = 500
    const getting = node.run(['get', '/', '--json'])
    // Some objects have arrived, more are on the way.
    await until(async () => await objectsIn(join(node.home, 'store')) > 0)
    await stopDaemon(node)
    expectCutOff(await getting)
    expect(await partialPuts(node)).toEqual([])

    proxy.latencyMs = 0
    await node.start()
    const resumed = await json<Transfer>(await node.run(['get', '/', '--json']))
    expect(resumed.missing).toBeLessThan(resumed.objects) // what arrived before the stop stayed
    const check = await node.run(['check', '--json'])
    expect(check.code, check.stdout + check.stderr).toBe(0)
  }, TEST_GUARD_MS)

  it('stop during `push / STORE` to an SFTP server that stopped answering: push fails, a restarted push finishes', async () => {
    const sshd = await startSshd()
    const node = await startBazil()
    // Enough objects (about 128) that the push is still going when the server freezes.
    await writeFiles(node, 4, 8 * 1024 * 1024)
    // Added after the writes: nothing is queued for it (copies=all re-queues nothing), push has work.
    await addSftp(node, 'box', sshd)

    const pushing = node.run(['push', '/', 'box', '--json'])
    await until(async () => await objectsIn(join(sshd.dataDir, 'bazil')) > 0)
    sshd.pauseSessions()
    await stopDaemon(node)
    expectCutOff(await pushing)

    await sshd.kill()
    await sshd.start()
    await node.start()
    const resumed = await json<Transfer>(await node.run(['push', '/', 'box', '--json']))
    expect(resumed.missing).toBeLessThan(resumed.objects) // what arrived before the stop stayed
    const after = await json<Transfer>(await node.run(['push', '/', 'box', '--dry-run', '--json']))
    expect(after.missing).toBe(0)
  }, TEST_GUARD_MS)

  it('stop while replication and a read through the mount wait on an S3 that never answers: the reader gets EIO, the queue keeps its entries and drains after a restart', async () => {
    if ('unavailable' in rgw) return
    const proxy = await startLatencyProxy(rgw.endpoint)
    const node = await startBazil()
    await addS3(node, 'cloud', rgw, proxy.url)
    const data = randomBytes(1024 * 1024)
    await writeFile(join(node.mount, 'old.bin'), data)
    await replicated(node)
    await dropLocalCopies(node)

    proxy.latencyMs = HUNG_MS
    proxy.reset()
    const reading = exec(process.execPath, ['-e',
      'require("node:fs/promises").readFile(process.argv[1]).then(() => console.log("read"), err => console.log(err.code))', join(node.mount, 'old.bin')])
    await until(async () => proxy.stats.requests > 0)
    const seen = proxy.stats.requests
    await writeFiles(node, 1, 2 * 1024 * 1024)
    await until(async () => proxy.stats.requests > seen && ((await backlog(node)).get('cloud')?.pending ?? 0) > 0)
    await stopDaemon(node)
    expect((await reading).stdout.trim()).toBe('EIO')

    proxy.latencyMs = 0
    await node.start()
    await replicated(node)
    const pushed = await json<Transfer>(await node.run(['push', '/', 'cloud', '--dry-run', '--json']))
    expect(pushed.objects).toBeGreaterThan(0)
    expect(pushed.missing).toBe(0) // every object queued before the stop reached the store
    expect((await readFile(join(node.mount, 'old.bin'))).equals(data)).toBe(true)
  }, TEST_GUARD_MS)
})
