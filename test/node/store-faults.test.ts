/**
 * Stores failing under a running daemon, end to end through the CLI and the mount, against the
 * real servers: the S3 gateway killed mid-run and sshd stopped mid-run (reads are served by the
 * other store, new writes wait in the queue, and replicate once the server is back: the
 * backlog in `status` goes to 0); a slow S3 behind a latency proxy (the staggered request to
 * the SFTP store wins and the slow one is cancelled, seen in the stores' counters and at the
 * proxy); an S3 that is down when the daemon starts (still a store: its writes wait for it);
 * a corrupted object in the SFTP store (the read returns the right bytes from the other store
 * and the bad copy is rewritten); and sshd down past the re-route grace under copies=2 (its
 * share of the writes goes to S3, which then serves every read alone).
 *
 * The kill test uses a private Ceph cluster: the shared one serves other test files.
 */
import { randomBytes } from 'node:crypto'
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import type { BazilMount } from '../helpers/mount.ts'
import { startLatencyProxy } from '../helpers/latency-proxy.ts'
import { sharedRgw, startRgw } from '../helpers/rgw.ts'
import { requireSshd, startSshd } from '../helpers/sshd.ts'
import { addS3, addSftp, backlog, dropLocalCopies, json, replicated, status, until } from '../helpers/stores.ts'
import { tmpDir } from '../helpers/tmp.ts'
import type { StoreInfo } from '../../src/node/api.ts'

const kind = testTarget()
const rgw = await sharedRgw()
const LONG = 240_000

async function stores (node: BazilMount): Promise<Map<string, StoreInfo>> {
  return new Map((await json<StoreInfo[]>(await node.run(['store', 'list', '--json']))).map(s => [s.name, s]))
}

/** Every file below `dir`, by path relative to it. */
async function filesIn (dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    out.set(path.slice(dir.length), await readFile(path))
  }
  return out
}

/**
 * One store goes away while the daemon runs: reads come from `other`, a new file's objects wait
 * for `victim` (and reach `other`), and replicate to `victim` once it is back.
 */
async function outage (node: BazilMount, victim: string, other: string, down: () => Promise<void>, up: () => Promise<void>): Promise<void> {
  const first = randomBytes(3 * 1024 * 1024 + 11)
  await writeFile(join(node.mount, 'first.bin'), first)
  await replicated(node)
  await dropLocalCopies(node)

  await down()
  expect((await readFile(join(node.mount, 'first.bin'))).equals(first)).toBe(true)
  expect((await stores(node)).get(other)?.counters?.wins).toBeGreaterThan(0)

  const second = randomBytes(2 * 1024 * 1024 + 5)
  await writeFile(join(node.mount, 'second.bin'), second)
  // The other store takes the new objects; the dead one keeps them queued, with the reason.
  await until(async () => {
    const b = await backlog(node)
    return b.get(other)?.pending === 0 && b.get(victim)?.lastError !== undefined
  })
  expect((await backlog(node)).get(victim)?.pending).toBeGreaterThan(0)

  await up()
  await until(async () => (await backlog(node)).get(victim)?.pending === 0)
  const dry = await json<{ missing: number, objects: number }>(await node.run(['push', '/', victim, '--dry-run', '--json']))
  expect(dry.objects).toBeGreaterThan(0)
  expect(dry.missing).toBe(0)
  expect((await readFile(join(node.mount, 'second.bin'))).equals(second)).toBe(true)
}

describe.runIf(kind === 'bazil' && requireFuse('bazil') && requireSshd() && !('unavailable' in rgw))('stores failing under a running daemon', () => {
  it('S3 killed mid-run: reads from SFTP, writes queued, replicated when it returns', async () => {
    const privateRgw = await startRgw()
    const sshd = await startSshd()
    const node = await startBazil()
    await addS3(node, 'cloud', privateRgw)
    await addSftp(node, 'box', sshd)
    await outage(node, 'cloud', 'box', privateRgw.kill, privateRgw.restart)
  }, LONG)

  it('S3 down when the daemon starts: it is still a store, its writes wait, and they replicate when it is up', async () => {
    const privateRgw = await startRgw()
    const node = await startBazil()
    await addS3(node, 'cloud', privateRgw)
    await privateRgw.kill()
    await node.stop()
    await node.restart()
    const down = (await stores(node)).get('cloud')
    expect(down?.state).toBe('unavailable')
    expect(down?.lastError).toBeDefined()

    const data = randomBytes(2 * 1024 * 1024 + 9)
    await writeFile(join(node.mount, 'f.bin'), data)
    await until(async () => ((await backlog(node)).get('cloud')?.pending ?? 0) > 0)
    await privateRgw.restart()
    await until(async () => (await backlog(node)).get('cloud')?.pending === 0)
    expect((await stores(node)).get('cloud')?.state).not.toBe('unavailable')
    const dry = await json<{ missing: number, objects: number }>(await node.run(['push', '/', 'cloud', '--dry-run', '--json']))
    expect(dry.objects).toBeGreaterThan(0)
    expect(dry.missing).toBe(0)
  }, LONG)

  it('sshd stopped and restarted: reads from S3, writes queued, replicated when it returns', async () => {
    if ('unavailable' in rgw) return
    const sshd = await startSshd()
    const node = await startBazil()
    await addSftp(node, 'box', sshd)
    await addS3(node, 'cloud', rgw)
    await outage(node, 'box', 'cloud', sshd.stop, sshd.start)
  }, LONG)

  it('sshd stopped past the re-route grace under copies=2: its share goes to S3, which alone serves every read', async () => {
    if ('unavailable' in rgw) return
    const sshd = await startSshd()
    const node = await startBazil({ env: { BAZIL_REROUTE_AFTER_MS: '1000' } })
    await addSftp(node, 'box', sshd)
    await addS3(node, 'cloud', rgw)
    expect((await node.run(['store', 'policy', 'copies=2'])).code).toBe(0)
    await sshd.stop()

    const data = randomBytes(4 * 1024 * 1024 + 7)
    await writeFile(join(node.mount, 'f.bin'), data)
    await node.restart() // every object in the local store, and so queued, before any is dropped
    // The objects picked for box fail there, then go to cloud: the policy is met without box.
    await until(async () => {
      const report = await status(node)
      return report.underReplicated === 0 && report.chunks > 0 && report.replication.find(r => r.store === 'box')?.lastError !== undefined
    })
    await dropLocalCopies(node)
    expect((await readFile(join(node.mount, 'f.bin'))).equals(data)).toBe(true)

    // box returns with nothing to catch up on: what went to cloud stays there.
    await sshd.start()
    expect((await backlog(node)).get('box')?.pending).toBe(0)
  }, LONG)

  it('a slow S3: the staggered request to SFTP wins and the slow one is cancelled', async () => {
    if ('unavailable' in rgw) return
    const proxy = await startLatencyProxy(rgw.endpoint)
    const sshd = await startSshd()
    const node = await startBazil()
    // Added first, so with nothing measured yet the fan-out asks it first.
    await addS3(node, 'cloud', rgw, proxy.url)
    await addSftp(node, 'box', sshd)
    const data = randomBytes(4 * 1024 * 1024 + 3)
    await writeFile(join(node.mount, 'f.bin'), data)
    await replicated(node)
    await dropLocalCopies(node)

    proxy.latencyMs = 100
    proxy.reset()
    expect((await readFile(join(node.mount, 'f.bin'))).equals(data)).toBe(true)
    const after = await stores(node)
    const cloud = after.get('cloud')?.counters
    const box = after.get('box')?.counters
    expect(cloud?.requests).toBeGreaterThan(0)
    expect(cloud?.cancelled).toBeGreaterThan(0)
    expect(box?.staggered).toBeGreaterThan(0)
    expect(box?.wins).toBeGreaterThan(0)
    // The cancellation reached the wire: the proxy saw the client hang up.
    expect(proxy.stats.aborted).toBeGreaterThan(0)
  }, LONG)

  it('a corrupted object in the SFTP store: the read is correct and the copy is rewritten', async () => {
    const sshd = await startSshd()
    const node = await startBazil()
    const backup = await tmpDir('bazil-backup-')
    await addSftp(node, 'box', sshd)
    const added = await node.run(['store', 'add', 'backup', backup])
    expect(added.code, added.stderr).toBe(0)
    const data = randomBytes(2 * 1024 * 1024 + 1)
    await writeFile(join(node.mount, 'f.bin'), data)
    await replicated(node)
    await node.stop()
    await rm(join(node.home, 'store', 'objects'), { recursive: true, force: true })
    const objects = join(sshd.dataDir, 'bazil', 'objects')
    // Every copy in the SFTP store is damaged. Nothing is measured yet after the restart, so the
    // fan-out asks the stores in the order they were added: SFTP first, then the backup.
    const originals = await filesIn(objects)
    expect(originals.size).toBeGreaterThan(0)
    for (const [path, good] of originals) {
      const bad = Buffer.from(good)
      const middle = bad.length >> 1
      bad.writeUInt8(bad.readUInt8(middle) ^ 0xff, middle)
      await writeFile(join(objects, path), bad)
    }
    await node.restart()

    expect((await readFile(join(node.mount, 'f.bin'))).equals(data)).toBe(true)
    const box = (await stores(node)).get('box')?.counters
    expect(box?.corrupt).toBeGreaterThan(0)
    // Repairs run in the background: every bad copy the reads met is rewritten with good bytes.
    await until(async () => (await stores(node)).get('box')?.counters?.repaired === box?.corrupt)
    const now = await filesIn(objects)
    const restored = [...originals].filter(([path, good]) => now.get(path)?.equals(good) === true)
    expect(restored.length).toBeGreaterThan(0)
  }, LONG)
})
