/**
 * Bench run `remote-stores`: a 256 MiB file whose chunks are only in remote stores, read back
 * through the Bazil mount, with (a) only the S3 store (Ceph RGW), (b) only the SFTP store
 * (OpenSSH), (c) both; next to the raw throughput of plain AWS SDK GETs and plain ssh2 SFTP
 * reads of the same objects, measured in the same run. Then the same reads with 50 ms added
 * in front of the S3 gateway (a node:http latency proxy): S3 alone, and S3 with SFTP beside it,
 * which shows what the fan-out's staggered requests save; the stores' counters from
 * `bazil store list --json` say who answered and how many slow requests were cancelled.
 *
 * Every read starts from a fresh daemon and mount with the local store emptied, so no cache
 * of Bazil's or the kernel's holds the file. The servers are the test helpers' (a memstore
 * Ceph cluster and an sshd on loopback), started and stopped by this run.
 */
import { createReadStream } from 'node:fs'
import { readdir, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { randomFillSync } from 'node:crypto'
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import { Client as SshClient } from 'ssh2'
import type { SFTPWrapper } from 'ssh2'
import { bootRgw, rgwUnavailable } from '../../test/helpers/rgw.ts'
import type { Rgw } from '../../test/helpers/rgw.ts'
import { startSshd } from '../../test/helpers/sshd.ts'
import type { Sshd } from '../../test/helpers/sshd.ts'
import { bootLatencyProxy } from '../../test/helpers/latency-proxy.ts'
import type { BenchContext, BenchRun, RunOutcome } from './context.ts'
import { describeMachine } from './machine.ts'
import { run } from './proc.ts'
import { table } from './report.ts'
import { openTarget } from './targets.ts'

const MiB = 1024 * 1024
const FULL_BYTES = 256 * MiB
const QUICK_BYTES = 64 * MiB
const ROUNDS = 2
const ADDED_MS = 50
/** Requests in flight for the raw baselines. */
const RAW_CONCURRENCY = 8
const BAZIL_CLI = new URL('../bazil.mjs', import.meta.url).pathname
const BUCKET = 'bazil-bench'
const PREFIX = 'vol'

interface Row { name: string, seconds: number[], note?: string, /** Bytes moved, when not the file's size. */ bytes?: number }
interface Counters { requests: number, staggered: number, wins: number, cancelled: number }
interface StoreRow { name: string, counters?: Counters }

export const remoteStoresRun: BenchRun = {
  id: 'remote-stores',
  describe: 'a 256 MiB file read through the mount from S3 (RGW), SFTP, both, and with 50 ms added to S3',
  run: async (context: BenchContext): Promise<RunOutcome> => {
    const { log, cleanup } = context
    const bytes = context.quick ? QUICK_BYTES : FULL_BYTES
    const errors: string[] = []
    const rows: Row[] = []
    const notes: string[] = []
    let objects = 0
    try {
      const missing = rgwUnavailable()
      if (missing !== undefined) throw new Error(`no Ceph RGW: ${missing}`)
      log('remote-stores: starting Ceph RGW, sshd and the latency proxy')
      const rgw: Rgw = await bootRgw()
      cleanup.defer('stop the bench RGW', rgw.stop)
      const sshd: Sshd = await startSshd()
      cleanup.defer('stop the bench sshd', sshd.dispose)
      const proxy = await bootLatencyProxy(rgw.endpoint, 0)
      cleanup.defer('close the latency proxy', proxy.close)

      const base = join(context.workDir, 'remote-stores')
      const target = await openTarget('bazil', base, cleanup)
      const home = join(base, 'bazil-home')
      const bazil = async (...args: string[]): Promise<string> =>
        (await run(process.execPath, [BAZIL_CLI, ...args], { env: { ...process.env, BAZIL_HOME: home }, timeoutMs: 600_000 })).stdout
      await writeFile(join(home, 's3.json'), JSON.stringify({ accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey }), { mode: 0o600 })
      const keyFile = join(base, 'sftp.key')
      await writeFile(keyFile, sshd.privateKey, { mode: 0o600 })
      const s3Url = (endpoint: string, create = false): string =>
        `s3://${BUCKET}/${PREFIX}?endpoint=${encodeURIComponent(endpoint)}${create ? '&create=1' : ''}`
      const urls = {
        s3: s3Url(rgw.endpoint),
        'slow-s3': s3Url(proxy.url),
        sftp: `sftp://${sshd.username}@${sshd.host}:${sshd.port}${sshd.dataDir}/bazil?key=${keyFile}`
      }

      log(`remote-stores: writing ${bytes / MiB} MiB through the mount, replicated to both stores`)
      await bazil('store', 'add', 's3', s3Url(rgw.endpoint, true))
      await bazil('store', 'add', 'sftp', urls.sftp)
      const data = Buffer.allocUnsafe(bytes)
      randomFillSync(data)
      await writeFile(join(target.dir, 'big.bin'), data)
      for (;;) {
        const status = JSON.parse(await bazil('status', '--json')) as { replication: Array<{ pending: number }> }
        if (status.replication.every(r => r.pending === 0)) break
        await new Promise(resolve => setTimeout(resolve, 200))
      }
      const stored = JSON.parse(await bazil('status', '--json')) as { chunks: number, storedBytes: number }
      objects = stored.chunks
      notes.push(`The file is ${stored.chunks} sealed objects (${(stored.storedBytes / MiB).toFixed(1)} MiB); each store holds all of them.`)

      const raw = await rawBaselines(rgw, sshd, log)
      rows.push({ name: '(a) raw: AWS SDK GetObject of every object', seconds: raw.s3, bytes: raw.s3Bytes, note: `${RAW_CONCURRENCY} requests in flight, ${(raw.s3Bytes / MiB).toFixed(1)} MiB sealed` })
      rows.push({ name: '(b) raw: ssh2 sftp.readFile of every object', seconds: raw.sftp, bytes: raw.sftpBytes, note: `${RAW_CONCURRENCY} files in flight, ${(raw.sftpBytes / MiB).toFixed(1)} MiB sealed` })

      let configured = new Set(['s3', 'sftp'])
      /** Reads big.bin from a fresh daemon whose local store is empty and whose stores are `names`. */
      const readWith = async (names: Array<keyof typeof urls>): Promise<{ seconds: number, stores: StoreRow[] }> => {
        for (const name of configured) if (!names.includes(name as keyof typeof urls)) await bazil('store', 'rm', name)
        for (const name of names) if (!configured.has(name)) await bazil('store', 'add', name, urls[name])
        configured = new Set(names)
        await rm(join(home, 'store', 'objects'), { recursive: true, force: true })
        await target.remount()
        const started = process.hrtime.bigint()
        const got = await readAll(join(target.dir, 'big.bin'))
        const seconds = Number(process.hrtime.bigint() - started) / 1e9
        if (got !== bytes) throw new Error(`read ${got} bytes of ${bytes}`)
        return { seconds, stores: JSON.parse(await bazil('store', 'list', '--json')) as StoreRow[] }
      }
      const cases: Array<{ name: string, stores: Array<keyof typeof urls>, latency: number }> = [
        { name: '(a) mount, S3 only', stores: ['s3'], latency: 0 },
        { name: '(b) mount, SFTP only', stores: ['sftp'], latency: 0 },
        { name: '(c) mount, S3 and SFTP', stores: ['s3', 'sftp'], latency: 0 },
        { name: `(d) mount, S3 +${ADDED_MS} ms only`, stores: ['slow-s3'], latency: ADDED_MS },
        { name: `(e) mount, S3 +${ADDED_MS} ms and SFTP`, stores: ['slow-s3', 'sftp'], latency: ADDED_MS }
      ]
      for (const c of cases) {
        const row: Row = { name: c.name, seconds: [] }
        proxy.latencyMs = c.latency
        for (let round = 1; round <= ROUNDS; round++) {
          proxy.reset()
          const { seconds, stores } = await readWith(c.stores)
          row.seconds.push(seconds)
          log(`remote-stores: ${c.name}, round ${round}: ${(bytes / MiB / seconds).toFixed(1)} MiB/s`)
          const who = stores.filter(s => s.name !== 'local' && s.counters !== undefined)
            .map(s => `${s.name} ${s.counters?.wins ?? 0} won / ${s.counters?.requests ?? 0} asked (${s.counters?.staggered ?? 0} staggered, ${s.counters?.cancelled ?? 0} cancelled)`)
          row.note = who.join('; ') + (c.latency > 0 ? `; proxy: ${proxy.stats.aborted} of ${proxy.stats.requests} requests abandoned by the client` : '')
        }
        rows.push(row)
      }
    } catch (error) {
      errors.push((error as Error).message)
      log(`remote-stores: ${(error as Error).stack ?? String(error)}`)
    }
    return { section: { id: 'remote-stores', markdown: report(context, bytes, objects, rows, notes, errors) }, errors }
  }
}

async function readAll (path: string): Promise<number> {
  let total = 0
  for await (const chunk of createReadStream(path, { highWaterMark: MiB })) total += (chunk as Buffer).length
  return total
}

async function pool<T> (items: T[], concurrency: number, work: (item: T) => Promise<number>): Promise<number> {
  let next = 0
  let total = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const n = await work(items[next++] as T)
      total += n
    }
  }))
  return total
}

async function rawBaselines (rgw: Rgw, sshd: Sshd, log: (line: string) => void): Promise<{ s3: number[], sftp: number[], s3Bytes: number, sftpBytes: number }> {
  const client = new S3Client({
    endpoint: rgw.endpoint, region: rgw.region, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED',
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey }
  })
  const keys: string[] = []
  let token: string | undefined
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${PREFIX}/`, ContinuationToken: token }))
    for (const o of page.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key)
    token = page.NextContinuationToken
  } while (token !== undefined)
  const objectsDir = join(sshd.dataDir, 'bazil', 'objects')
  const files = (await readdir(objectsDir, { recursive: true, withFileTypes: true })).filter(e => e.isFile()).map(e => join(e.parentPath, e.name))

  const sftp = await openSftp(sshd)
  const out = { s3: [] as number[], sftp: [] as number[], s3Bytes: 0, sftpBytes: 0 }
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      let started = process.hrtime.bigint()
      const s3Bytes = await pool(keys, RAW_CONCURRENCY, async key => {
        const body = await (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body?.transformToByteArray()
        return body?.byteLength ?? 0
      })
      out.s3.push(Number(process.hrtime.bigint() - started) / 1e9)
      started = process.hrtime.bigint()
      const sftpBytes = await pool(files, RAW_CONCURRENCY, async path => await new Promise<number>((resolve, reject) => {
        sftp.sftp.readFile(path, (err, data) => { if (err !== undefined && err !== null) reject(err); else resolve(data.length) })
      }))
      out.sftp.push(Number(process.hrtime.bigint() - started) / 1e9)
      out.s3Bytes = s3Bytes
      out.sftpBytes = sftpBytes
      log(`remote-stores: raw round ${round}: S3 ${keys.length} objects ${(s3Bytes / MiB).toFixed(1)} MiB, SFTP ${files.length} files ${(sftpBytes / MiB).toFixed(1)} MiB`)
    }
  } finally {
    sftp.close()
    client.destroy()
  }
  return out
}

async function openSftp (sshd: Sshd): Promise<{ sftp: SFTPWrapper, close: () => void }> {
  const socket = connect(sshd.port, sshd.host)
  socket.setNoDelay(true) // as the SFTP store does: with Nagle's algorithm on, a read crawls
  const client = new SshClient()
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => { resolve() }).once('error', reject)
    client.connect({ sock: socket, username: sshd.username, privateKey: sshd.privateKey, hostVerifier: () => true })
  })
  const sftp = await new Promise<SFTPWrapper>((resolve, reject) => { client.sftp((err, s) => { if (err !== undefined && err !== null) reject(err); else resolve(s) }) })
  return { sftp, close: () => { client.end() } }
}

function report (context: BenchContext, bytes: number, objects: number, rows: Row[], notes: string[], errors: string[]): string {
  const best = (row: Row): number => Math.min(...row.seconds)
  const lines = [
    '## Remote stores (issue 5)',
    '',
    `Measured ${context.startedAt.toISOString()} with \`${context.command}\`.`,
    '',
    describeMachine(context.machine),
    '',
    `A ${bytes / MiB} MiB file of random bytes whose chunks are only in remote stores (the local store emptied and the daemon restarted before every read, so nothing is cached), read through the mount with one 1 MiB-buffered stream. S3 is a one-node Ceph RGW (memstore) and SFTP an OpenSSH sshd, both on loopback; the raw rows read the same objects with the AWS SDK and ssh2 directly. Rows (d) and (e) put a latency proxy adding ${ADDED_MS} ms to every request in front of the RGW. Best of ${ROUNDS} rounds.`,
    '',
    table(['read', 'seconds', 'MiB/s', 'ms per object', 'who answered'], rows.filter(r => r.seconds.length > 0).map(r => [
      r.name, best(r).toFixed(2), ((r.bytes ?? bytes) / MiB / best(r)).toFixed(1), objects > 0 ? (best(r) * 1000 / objects).toFixed(1) : '-', r.note ?? ''
    ])),
    ''
  ]
  const slowAlone = rows.find(r => r.name.startsWith('(d)'))
  const slowWithSftp = rows.find(r => r.name.startsWith('(e)'))
  if (slowAlone !== undefined && slowWithSftp !== undefined && slowAlone.seconds.length > 0 && slowWithSftp.seconds.length > 0) {
    lines.push(`With ${ADDED_MS} ms on S3, having the SFTP store beside it takes the read from ${best(slowAlone).toFixed(2)} s to ${best(slowWithSftp).toFixed(2)} s: the stagger sends the next request to SFTP instead of waiting, SFTP soon answers most requests, and the slow requests are cancelled (the proxy sees the client hang up).`, '')
  }
  const fastAlone = rows.find(r => r.name.startsWith('(a) mount'))
  if (objects > 0 && slowAlone !== undefined && fastAlone !== undefined && slowAlone.seconds.length > 0 && fastAlone.seconds.length > 0) {
    const perObject = (r: Row): number => best(r) * 1000 / objects
    lines.push(`With S3 alone, ${ADDED_MS} ms more per request took the read from ${perObject(fastAlone).toFixed(1)} to ${perObject(slowAlone).toFixed(1)} ms per object (+${(perObject(slowAlone) - perObject(fastAlone)).toFixed(1)} ms): the closer that is to ${ADDED_MS} ms, the more the mount's reads wait for one object at a time. The raw rows, with ${RAW_CONCURRENCY} requests in flight, show what the servers can give.`, '')
  }
  lines.push(...notes.map(n => `${n}`))
  if (errors.length > 0) lines.push('', `Errors: ${errors.join('; ')}`)
  return lines.join('\n') + '\n'
}
