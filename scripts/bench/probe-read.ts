/**
 * A probe, not a run: where a lazy read on a synced peer spends its time. Pairs two daemons,
 * writes a file on A, syncs, then reads it on B through the mount in 128 KiB reads, timing
 * each one; prints a histogram of read latencies and the slowest reads.
 * `node --import tsx scripts/bench/probe-read.ts [MiB]`
 */
import '../../src/util/polyfills.ts'
import { randomBytes } from 'node:crypto'
import { open, mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { startBazilPair } from './bazil-pair.ts'
import { Cleanup } from './cleanup.ts'
import { writeBig } from './sync-workloads.ts'

const MiB = 1024 * 1024
const cleanup = new Cleanup()
const dir = await mkdtemp('/var/tmp/bazil-probe-')
cleanup.defer('rm', async () => { await rm(dir, { recursive: true, force: true }) })
try {
  const bz = await startBazilPair(dir, cleanup)
  const size = Number(process.argv[2] ?? '64') * MiB
  const data = randomBytes(size)
  await writeBig(join(bz.a.mount, 'big.bin'), data)
  await bz.a.syncWait(); await bz.b.syncWait()
  const handle = await open(join(bz.b.mount, 'big.bin'), 'r')
  const buf = Buffer.alloc(128 * 1024)
  const times: number[] = []
  const t0 = performance.now()
  for (let off = 0; off < size; off += buf.length) {
    const s = performance.now()
    await handle.read(buf, 0, buf.length, off)
    times.push(performance.now() - s)
  }
  const total = performance.now() - t0
  await handle.close()
  const sorted = [...times].sort((a, b) => a - b)
  const q = (p: number): string => (sorted[Math.floor(p * (sorted.length - 1))] ?? 0).toFixed(2)
  process.stdout.write(`read ${size / MiB} MiB in ${(total / 1000).toFixed(2)} s = ${(size / MiB / total * 1000).toFixed(1)} MiB/s; ${times.length} reads; p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} max ${q(1)} ms` + '\n')
  const slow = times.filter(t => t > 5)
  process.stdout.write(`${slow.length} reads > 5 ms, summing ${(slow.reduce((a, b) => a + b, 0) / 1000).toFixed(2)} s; first reads: ${times.slice(0, 24).map(t => t.toFixed(1)).join(' ')}` + '\n')
  const status = JSON.parse(await bz.b.cli('store', 'list', '--json')) as unknown
  process.stdout.write(JSON.stringify(status) + '\n')
  // second read: is it cached locally now?
  const t1 = performance.now()
  const h2 = await open(join(bz.b.mount, 'big.bin'), 'r')
  for (let off = 0; off < size; off += buf.length) await h2.read(buf, 0, buf.length, off)
  await h2.close()
  process.stdout.write(`second read ${((performance.now() - t1) / 1000).toFixed(2)} s` + '\n')
} finally {
  await cleanup.runAll()
}
