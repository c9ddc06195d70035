/**
 * A probe, not a run: does a connected peer slow small-file writes on A (it pulls while A
 * writes)? Pairs two daemons, writes N small files into A's mount with B stopped, then with B
 * connected, syncs, reads them on B one by one (each a lazy fetch from A) and again (local).
 * Copies both daemons' logs to /tmp/probe-{a,b}.log (run with DEBUG=bazil:syncer to count
 * pulls). `node --import tsx scripts/bench/probe-write.ts [N]`
 */
import '../../src/util/polyfills.ts'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { startBazilPair } from './bazil-pair.ts'
import { Cleanup } from './cleanup.ts'
import { readTree, smallTree, writeTree } from './sync-workloads.ts'

const n = Number(process.argv[2] ?? '500')
const cleanup = new Cleanup()
const dir = await mkdtemp('/var/tmp/bazil-probe-')
cleanup.defer('remove the probe directory', async () => { await rm(dir, { recursive: true, force: true }) })
try {
  const bz = await startBazilPair(dir, cleanup)
  const time = async (what: string, work: () => Promise<unknown>): Promise<void> => {
    const start = performance.now()
    await work()
    const ms = performance.now() - start
    process.stdout.write(`${what}: ${(ms / 1000).toFixed(2)} s (${(ms / n).toFixed(2)} ms per file)\n`)
  }
  await bz.b.cli('stop')
  await time('write with B stopped', async () => { await writeTree(bz.a.mount, smallTree('zero', n, 20)) })
  await bz.b.cli('start', '--mount', bz.b.mount, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns')
  await bz.a.syncWait()
  await bz.b.syncWait()
  const one = smallTree('one', n, 20)
  await time('write with B connected', async () => { await writeTree(bz.a.mount, one) })
  await time('sync --wait A, B', async () => { await bz.a.syncWait(); await bz.b.syncWait() })
  await time('read on B (lazy)', async () => { await readTree(bz.b.mount, one) })
  await time('read on B again (local)', async () => { await readTree(bz.b.mount, one) })
  await cp(join(bz.a.home, 'daemon.log'), '/tmp/probe-a.log')
  await cp(join(bz.b.home, 'daemon.log'), '/tmp/probe-b.log')
} finally {
  await cleanup.runAll()
}
