/**
 * A real S3 for tests: a one-node Ceph cluster — one mon, one memstore OSD, no mgr, no cephx —
 * with the RADOS Gateway on 127.0.0.1, all under one temp dir, up in about two seconds.
 *
 * - `sharedRgw()`: the test run's cluster, started once by rgw-global-setup.ts and handed over
 *   with vitest's provide/inject. Call it at the top level of a test file. Resolves to
 *   `{ unavailable }` (skip) when the Ceph tools are missing — a failure with CI=true.
 * - `startRgw()`: a private cluster that the test (or file) owns, for tests that kill, pause or
 *   restart the gateway; stopped after the current test, or after the file when made at its
 *   top level.
 * - `bootRgw()`: the same without registering cleanup (the global setup stops it itself).
 *
 * The configuration carries the pitfalls listed in ../shared/TESTING.md ("S3"): no cephx, also
 * in [client] (or radosgw hangs 300 s); a 0.1 s paxos interval (bootstrap 12 s → 2 s); beast
 * with tcp_nodelay (or small requests take 44 ms); pool size one with 8 PGs; no mgr, so never
 * `ceph df`. Memstore keeps data in RAM: fine for tests, which write little.
 *
 * Daemons are stopped by the PIDs started here: SIGTERM, up to a second's grace, SIGKILL (the
 * OSD takes > 4 s to exit on SIGTERM). They run under `setpriv --pdeathsig KILL`, so they die
 * with the process that started them even if it is killed, and an exit sweep kills any left.
 */
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { closeSync, existsSync, openSync, rmSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { get as httpGet } from 'node:http'
import { createServer } from 'node:net'
import { delimiter, join } from 'node:path'
import { tmpdir } from 'node:os'
import { promisify } from 'node:util'
import { afterAll, inject, onTestFinished } from 'vitest'

const execFileAsync = promisify(execFile)
/** Every command has a deadline: a Ceph tool that cannot reach the mon waits 300 s. */
async function run (command: string, args: string[]): Promise<{ stdout: string }> {
  return await execFileAsync(command, args, { timeout: COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL' })
}

/** What a test needs to reach the gateway; plain data, so vitest can provide it. */
export interface RgwEndpoint {
  endpoint: string
  region: string
  accessKeyId: string
  secretAccessKey: string
}

export interface Rgw extends RgwEndpoint {
  readonly dir: string
  readonly pids: { mon: number, osd: number, rgw: number | undefined }
  /** SIGKILL the gateway (the cluster keeps its data). */
  kill: () => Promise<void>
  /** Start the gateway again (killing it first if it runs) and wait until it answers. */
  restart: () => Promise<void>
  /** SIGSTOP / SIGCONT the gateway: connections are accepted by the kernel, never answered. */
  pause: () => void
  resume: () => void
  /** Stop every daemon and remove the dir. Idempotent. */
  stop: () => Promise<void>
}

/** What rgw-global-setup.ts provides as 'rgw'. */
export type ProvidedRgw = RgwEndpoint | { unavailable: string } | { error: string }

declare module 'vitest' {
  export interface ProvidedContext {
    rgw?: ProvidedRgw
  }
}

const TOOLS = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph']
const REGION = 'us-east-1'
const READY_TIMEOUT_MS = 60_000
const COMMAND_TIMEOUT_MS = 30_000
const GRACE_MS = 1000
/** Clusters not yet stopped: their dir and the PIDs of their daemons still running. */
const live = new Map<Rgw, () => number[]>()
let exitSweepInstalled = false

/** Why a cluster cannot be started here, or undefined if the tools are installed. */
export function rgwUnavailable (): string | undefined {
  const missing = TOOLS.filter(tool => which(tool) === undefined)
  if (missing.length === 0) return undefined
  return `Ceph tools missing (${missing.join(', ')}): apt-get install --no-install-recommends ceph-mon ceph-osd radosgw`
}

/** The run's shared cluster (see the module doc). Call at the top level of a test file. */
export async function sharedRgw (): Promise<RgwEndpoint | { unavailable: string }> {
  const provided = inject('rgw')
  if (provided !== undefined && 'error' in provided) throw new Error(`the shared RGW did not start: ${provided.error}`)
  if (provided !== undefined && 'endpoint' in provided) return provided
  const unavailable = provided?.unavailable ?? rgwUnavailable()
  if (unavailable !== undefined) {
    if (process.env.CI === 'true') throw new Error(`CI must run the S3 tests: ${unavailable}`)
    return { unavailable }
  }
  // The global setup skipped it (it saw no file needing it, or is not configured): own one.
  return await startRgw()
}

/** A private cluster, stopped after the current test (or file). */
export async function startRgw (): Promise<Rgw> {
  const rgw = await bootRgw()
  try {
    onTestFinished(rgw.stop)
  } catch {
    try { afterAll(rgw.stop) } catch { /* neither: the exit sweep kills it */ }
  }
  return rgw
}

/** A private cluster that the caller stops. Retries on a port lost to a race with others. */
export async function bootRgw (): Promise<Rgw> {
  const unavailable = rgwUnavailable()
  if (unavailable !== undefined) throw new Error(unavailable)
  for (let attempt = 1; ; attempt++) {
    try {
      return await bootOnce()
    } catch (err) {
      if (attempt >= 3 || !(err instanceof PortLost)) throw err
    }
  }
}

class PortLost extends Error {}

async function bootOnce (): Promise<Rgw> {
  const dir = await mkdtemp(join(tmpdir(), 'bazil-rgw-'))
  const [monPort = 0, rgwPort = 0] = await freePorts(2)
  const conf = join(dir, 'ceph.conf')
  const fsid = randomUUID()
  const osdUuid = randomUUID()
  const endpoint = `http://127.0.0.1:${rgwPort}`
  const accessKeyId = randomBytes(10).toString('hex').toUpperCase()
  const secretAccessKey = randomBytes(20).toString('hex')
  const daemons: { mon?: Daemon, osd?: Daemon, rgw?: Daemon } = {}
  let stopped: Promise<void> | undefined

  const startGateway = async (): Promise<void> => {
    daemons.rgw = spawnDaemon(dir, 'rgw', 'radosgw', ['-f', '-c', conf, '-n', 'client.rgw'])
    await waitForHttp(endpoint, Object.values(daemons), dir)
  }
  const rgw: Rgw = {
    endpoint, region: REGION, accessKeyId, secretAccessKey, dir,
    get pids () { return { mon: daemons.mon?.pid ?? 0, osd: daemons.osd?.pid ?? 0, rgw: daemons.rgw?.alive === true ? daemons.rgw.pid : undefined } },
    kill: async () => { await daemons.rgw?.terminate(0) },
    restart: async () => { await daemons.rgw?.terminate(GRACE_MS); await startGateway() },
    pause: () => { daemons.rgw?.signal('SIGSTOP') },
    resume: () => { daemons.rgw?.signal('SIGCONT') },
    stop: async () => {
      stopped ??= (async () => {
        await Promise.all(Object.values(daemons).map(async daemon => { await daemon.terminate(GRACE_MS) }))
        live.delete(rgw)
        await rm(dir, { recursive: true, force: true, maxRetries: 3 })
      })()
      await stopped
    }
  }
  live.set(rgw, () => Object.values(daemons).filter(daemon => daemon.alive).map(daemon => daemon.pid))
  installExitSweep()
  try {
    await Promise.all(['mon/ceph-a', 'osd/ceph-0', 'run', 'log', 'rgw'].map(async sub => { await mkdir(join(dir, sub), { recursive: true }) }))
    await writeFile(conf, cephConf(dir, fsid, monPort, rgwPort))
    await run('monmaptool', ['--create', '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, '--fsid', fsid, join(dir, 'monmap')])
    await Promise.all([
      run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap')]),
      run('ceph-osd', ['-c', conf, '--no-mon-config', '--mkfs', '-i', '0', '--osd-uuid', osdUuid])
    ])
    daemons.mon = spawnDaemon(dir, 'mon', 'ceph-mon', ['-f', '-c', conf, '-i', 'a'])
    const osdId = await cephCli(conf, ['osd', 'new', osdUuid], daemons.mon, dir)
    if (osdId.trim() !== '0') throw new Error(`ceph osd new gave id ${osdId.trim()}, not 0`)
    daemons.osd = spawnDaemon(dir, 'osd', 'ceph-osd', ['-f', '-c', conf, '-i', '0'])
    // The gateway waits for the OSD by itself (it creates its pools once there is one).
    await startGateway()
    await run('radosgw-admin', ['-c', conf, 'user', 'create', '--uid', 'bazil-test', '--display-name', 'bazil test',
      '--access-key', accessKeyId, '--secret-key', secretAccessKey])
    return rgw
  } catch (err) {
    const logs = await logTails(dir)
    await rgw.stop()
    if (/Address already in use|bind unable/i.test(logs)) throw new PortLost(logs)
    throw new Error(`starting a Ceph RGW failed: ${(err as Error).message}\n${logs}`, { cause: err })
  }
}

function cephConf (dir: string, fsid: string, monPort: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = [v2:127.0.0.1:${monPort}]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
log file = ${dir}/log/$name.log
mon data = ${dir}/mon/$cluster-$id
osd data = ${dir}/osd/$cluster-$id
paxos propose interval = 0.1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 2147483648

[client]
auth client required = none
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:${rgwPort} tcp_nodelay=1
rgw data = ${dir}/rgw
rgw thread pool size = 64
`
}

interface Daemon {
  readonly pid: number
  readonly name: string
  readonly alive: boolean
  signal: (signal: NodeJS.Signals) => void
  /** SIGTERM, `graceMs` to exit, then SIGKILL; resolves once it has exited. */
  terminate: (graceMs: number) => Promise<void>
}

function spawnDaemon (dir: string, name: string, command: string, args: string[]): Daemon {
  const out = openSync(join(dir, 'log', `${name}.out`), 'a')
  const setpriv = which('setpriv')
  const child: ChildProcess = setpriv === undefined
    ? spawn(command, args, { stdio: ['ignore', out, out] })
    : spawn(setpriv, ['--pdeathsig', 'KILL', command, ...args], { stdio: ['ignore', out, out] })
  closeSync(out)
  let alive = child.pid !== undefined
  const exited = new Promise<void>(resolve => {
    child.once('exit', () => { alive = false; resolve() })
    child.once('error', () => { alive = false; resolve() })
  })
  const signal = (sig: NodeJS.Signals): void => { if (alive) child.kill(sig) }
  return {
    pid: child.pid ?? 0,
    name,
    get alive () { return alive },
    signal,
    terminate: async (graceMs: number) => {
      if (graceMs > 0) {
        signal('SIGCONT') // a paused daemon cannot act on SIGTERM
        signal('SIGTERM')
        const timer = { id: undefined as NodeJS.Timeout | undefined }
        await Promise.race([exited, new Promise(resolve => { timer.id = setTimeout(resolve, graceMs) })])
        clearTimeout(timer.id)
      }
      signal('SIGKILL')
      await exited
    }
  }
}

/** Runs the ceph CLI; fails at once if the mon has exited. */
async function cephCli (conf: string, args: string[], mon: Daemon, dir: string): Promise<string> {
  const cli = run('ceph', ['-c', conf, '--connect-timeout', '20', ...args])
  const died = waitForDeath([mon], dir)
  try {
    return (await Promise.race([cli, died.promise])).stdout
  } finally {
    died.cancel()
  }
}

/** Polls `GET /` until the gateway answers 200; fails at once if any daemon exits. */
async function waitForHttp (url: string, daemons: Daemon[], dir: string): Promise<void> {
  const died = waitForDeath(daemons, dir)
  const deadline = Date.now() + READY_TIMEOUT_MS
  try {
    while (true) {
      const status = await Promise.race([httpStatus(url), died.promise])
      if (status === 200) return
      if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${READY_TIMEOUT_MS} ms`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  } finally {
    died.cancel()
  }
}

function waitForDeath (daemons: Daemon[], dir: string): { promise: Promise<never>, cancel: () => void } {
  let timer: NodeJS.Timeout | undefined
  const promise = new Promise<never>((_resolve, reject) => {
    const check = (): void => {
      const dead = daemons.find(daemon => !daemon.alive)
      if (dead === undefined) { timer = setTimeout(check, 50); return }
      void logTails(dir).then(logs => { reject(new Error(`${dead.name} exited while starting\n${logs}`)) })
    }
    check()
  })
  promise.catch(() => {}) // raced; a loss after cancel() must not be unhandled
  return { promise, cancel: () => { clearTimeout(timer) } }
}

async function httpStatus (url: string): Promise<number> {
  return await new Promise(resolve => {
    const req = httpGet(url, { timeout: 1000 }, res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('timeout', () => { req.destroy() })
    req.on('error', () => { resolve(0) })
  })
}

async function freePorts (n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer())
  const ports = await Promise.all(servers.map(async server => await new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      resolve(typeof address === 'object' && address !== null ? address.port : 0)
    })
  })))
  await Promise.all(servers.map(async server => { await new Promise(resolve => server.close(resolve)) }))
  return ports
}

/** The last lines of every daemon's log and output, for an error message. */
async function logTails (dir: string): Promise<string> {
  const names = ['mon.a.log', 'mon.out', 'osd.0.log', 'osd.out', 'client.rgw.log', 'rgw.out']
  const tails = await Promise.all(names.map(async name => {
    const text = await readFile(join(dir, 'log', name), 'utf8').catch(() => '')
    return text === '' ? '' : `--- ${name}\n${text.trimEnd().split('\n').slice(-15).join('\n')}`
  }))
  return tails.filter(tail => tail !== '').join('\n')
}

function which (tool: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/usr/bin', '/sbin', '/bin'])
  return dirs.map(dir => join(dir, tool)).find(path => existsSync(path))
}

/** At exit (or vitest's SIGTERM to a worker) SIGKILL what is left: no time to be gentle. */
function installExitSweep (): void {
  if (exitSweepInstalled) return
  exitSweepInstalled = true
  process.once('exit', sweep)
  process.once('SIGTERM', signal => {
    sweep()
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
  })
}

function sweep (): void {
  for (const [rgw, pids] of live) {
    for (const pid of pids()) {
      try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
    }
    try { rmSync(rgw.dir, { recursive: true, force: true }) } catch { /* best effort at exit */ }
  }
  live.clear()
}
