/**
 * A real OpenSSH server for SFTP store tests: Debian's `/usr/sbin/sshd -D -e` on a free loopback
 * port, with a temporary ed25519 host key, one authorized client key (returned to the test),
 * `internal-sftp` and a data dir for stores. Public-key logins only; root may log in (tests run
 * as root).
 *
 * - `startSshd()`: one server; it stops and removes its dir after the current test (or suite).
 * - `useSshd()`: one server shared by a describe block (started in beforeAll, gone in afterAll).
 * - `makeKeyPair()`: a fresh ed25519 key pair (a stranger's client key, another host's key).
 * - `requireSshd()`: at collection time, a skip naming the reason when sshd is missing, or a
 *   failing test under CI=true.
 *
 * `stop()` and `kill()` end the listener and every session process under it (sshd forks one per
 * connection and they outlive the listener otherwise), so clients really see the server go;
 * `pauseSessions()` freezes them, so requests in flight stay unanswered for as long as a test needs.
 * A sweep at worker exit kills whatever a hook could not reach, by PID.
 */
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, onTestFinished, test } from 'vitest'

export const SSHD = '/usr/sbin/sshd'
const SSH_KEYGEN = '/usr/bin/ssh-keygen'
/** Guards against a hang only; never used to judge speed. */
const START_GUARD_MS = 20_000

export interface Sshd {
  host: string
  port: number
  username: string
  /** The authorized client key, OpenSSH private key format. */
  privateKey: Buffer
  /** The host key as known_hosts writes it: base64 of the raw SSH public key blob. */
  hostPublicKey: string
  /** `SHA256:<base64>`, as `ssh-keygen -l` prints it. */
  hostKeyFingerprint: string
  /** An empty dir, owned by root, for stores to live in. */
  dataDir: string
  /** Starts the server again on the same port with the same keys (after stop or kill). */
  start: () => Promise<void>
  /** SIGTERM to the listener and SIGKILL to its sessions; resolves once all are gone. */
  stop: () => Promise<void>
  /** SIGKILL to the listener and its sessions (a crash); resolves once all are gone. */
  kill: () => Promise<void>
  /**
   * SIGSTOPs every session process: requests on open connections then go unanswered (until
   * stop or kill, which end the sessions; new connections are still accepted).
   */
  pauseSessions: () => void
  /** Kills the server and removes its dir. */
  dispose: () => Promise<void>
}

const running = new Set<number>()
const dirs = new Set<string>()
let exitSweepInstalled = false

function isCI (): boolean {
  return process.env.CI === 'true'
}

/**
 * Call at collection time: `describe.runIf(requireSshd())(...)`. When sshd or ssh-keygen is
 * missing it registers a skipped test naming the reason, or under CI=true a failing one.
 */
export function requireSshd (): boolean {
  const missing = [SSHD, SSH_KEYGEN].filter(tool => !existsSync(tool))
  if (missing.length === 0) return true
  const why = `${missing.join(' and ')} not installed (Debian package openssh-server)`
  if (isCI()) test('sshd is available', () => { throw new Error(`CI=true and ${why}`) })
  else test.skip(`skipped: ${why}`, () => {})
  return false
}

/** One server for a describe block: started in beforeAll, disposed in afterAll. */
export function useSshd (): () => Sshd {
  let sshd: Sshd | undefined
  beforeAll(async () => { sshd = await launch() })
  afterAll(async () => { await sshd?.dispose() })
  return () => {
    if (sshd === undefined) throw new Error('sshd not started (did beforeAll fail?)')
    return sshd
  }
}

/** A server for the current test (or suite, when called at collection time). */
export async function startSshd (): Promise<Sshd> {
  const sshd = await launch()
  try {
    onTestFinished(sshd.dispose)
  } catch {
    try { afterAll(sshd.dispose) } catch { /* neither: the exit sweep kills it */ }
  }
  return sshd
}

async function launch (): Promise<Sshd> {
  installExitSweep()
  const dir = await mkdtemp(join(tmpdir(), 'bazil-sshd-'))
  dirs.add(dir)
  const dataDir = join(dir, 'data')
  await mkdir(dataDir)
  // The privilege separation dir; Debian's package makes it at boot, not at install.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 })
  keygen(join(dir, 'host_ed25519'))
  keygen(join(dir, 'client_ed25519'))
  await writeFile(join(dir, 'authorized_keys'), await readFile(join(dir, 'client_ed25519.pub')))
  const hostPublicKey = (await readFile(join(dir, 'host_ed25519.pub'), 'utf8')).split(' ')[1] ?? ''
  const hostKeyFingerprint = 'SHA256:' + createHash('sha256').update(Buffer.from(hostPublicKey, 'base64')).digest('base64').replace(/=+$/, '')

  let child: ChildProcess | undefined
  let port = 0
  for (let attempt = 0; child === undefined; attempt++) {
    port = await freePort()
    await writeFile(join(dir, 'sshd_config'), config(dir, port))
    try {
      child = await spawnSshd(dir)
    } catch (err) {
      // Another process took the port between our probe and sshd's bind: try another.
      if (attempt >= 4 || !String(err).includes('Address already in use')) throw err
    }
  }

  const sshd: Sshd = {
    host: '127.0.0.1',
    port,
    username: 'root',
    privateKey: await readFile(join(dir, 'client_ed25519')),
    hostPublicKey,
    hostKeyFingerprint,
    dataDir,
    start: async () => {
      if (child !== undefined) throw new Error('sshd is already running')
      child = await spawnSshd(dir)
    },
    stop: async () => { await end('SIGTERM') },
    kill: async () => { await end('SIGKILL') },
    pauseSessions: () => {
      if (child?.pid === undefined) throw new Error('sshd is not running')
      const sessions = descendants(child.pid)
      if (sessions.length === 0) throw new Error('no sessions to pause')
      for (const pid of sessions) process.kill(pid, 'SIGSTOP')
    },
    dispose: async () => {
      await end('SIGKILL')
      await rm(dir, { recursive: true, force: true })
      dirs.delete(dir)
    }
  }

  async function end (signal: NodeJS.Signals): Promise<void> {
    const listener = child
    if (listener?.pid === undefined) return
    child = undefined
    const sessions = descendants(listener.pid)
    if (listener.exitCode === null && listener.signalCode === null) {
      const exited = new Promise(resolve => { listener.once('exit', resolve) })
      listener.kill(signal)
      for (const pid of sessions) killQuietly(pid, 'SIGKILL')
      await exited
    }
    for (const pid of sessions) killQuietly(pid, 'SIGKILL')
    running.delete(listener.pid)
    // Sessions are not our children: wait until the kernel has reaped them, sockets closed.
    while (sessions.some(alive)) await new Promise(resolve => setTimeout(resolve, 5))
  }
  return sshd
}

function config (dir: string, port: number): string {
  return [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${join(dir, 'host_ed25519')}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'StrictModes no',
    'UsePAM no',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'Subsystem sftp internal-sftp',
    'LogLevel INFO',
    ''
  ].join('\n')
}

/** Resolves once sshd listens; rejects with its stderr if it exits or never gets there. */
async function spawnSshd (dir: string): Promise<ChildProcess> {
  const child = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] })
  if (child.pid !== undefined) running.add(child.pid)
  let stderr = ''
  await new Promise<void>((resolve, reject) => {
    const guard = setTimeout(() => { fail(new Error(`sshd did not start in ${START_GUARD_MS} ms: ${stderr}`)) }, START_GUARD_MS)
    const fail = (err: Error): void => {
      clearTimeout(guard)
      child.kill('SIGKILL')
      reject(err)
    }
    child.stderr?.on('data', (data: Buffer) => {
      stderr += data.toString()
      if (stderr.includes('Server listening on')) { clearTimeout(guard); resolve() }
    })
    child.once('error', fail)
    child.once('exit', (code, signal) => { fail(new Error(`sshd exited (${code ?? signal}): ${stderr}`)) })
  })
  child.removeAllListeners('exit')
  child.once('exit', () => { if (child.pid !== undefined) running.delete(child.pid) })
  child.stderr?.resume() // keep draining its log so it never blocks on a full pipe
  return child
}

/** A fresh ed25519 key pair (e.g. a key the server does not know, or a host key it lacks). */
export async function makeKeyPair (): Promise<{ privateKey: Buffer, publicKey: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'bazil-key-'))
  try {
    keygen(join(dir, 'key'))
    const publicKey = (await readFile(join(dir, 'key.pub'), 'utf8')).split(' ')[1] ?? ''
    return { privateKey: await readFile(join(dir, 'key')), publicKey }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

function keygen (path: string): void {
  const result = spawnSync(SSH_KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-C', 'bazil-test', '-f', path])
  if (result.status !== 0) throw new Error(`ssh-keygen failed: ${String(result.stderr)}`)
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port)
        else reject(new Error('no port'))
      })
    })
  })
}

/** Every process below `pid`, from /proc (Linux). */
function descendants (pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let stat: string
    try { stat = readFileSync(`/proc/${name}/stat`, 'utf8') } catch { continue }
    // The command name may hold spaces and parentheses: fields restart after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    const list = children.get(ppid) ?? []
    list.push(Number(name))
    children.set(ppid, list)
  }
  const out: number[] = []
  const walk = (parent: number): void => {
    for (const child of children.get(parent) ?? []) { out.push(child); walk(child) }
  }
  walk(pid)
  return out
}

function alive (pid: number): boolean {
  try {
    // A zombie still answers kill(0): treat it as gone, its sockets are closed.
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ')
  } catch {
    return false
  }
}

function killQuietly (pid: number, signal: NodeJS.Signals): void {
  try { process.kill(pid, signal) } catch { /* already gone */ }
}

function installExitSweep (): void {
  if (exitSweepInstalled) return
  exitSweepInstalled = true
  process.once('exit', sweep)
  // vitest ends fork workers with SIGTERM, which skips 'exit': sweep, then die of it as before.
  process.once('SIGTERM', signal => {
    sweep()
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
  })
}

function sweep (): void {
  for (const pid of running) {
    for (const session of descendants(pid)) killQuietly(session, 'SIGKILL')
    killQuietly(pid, 'SIGKILL')
  }
  running.clear()
  for (const dir of dirs) {
    try { rmSync(dir, { recursive: true, force: true }) } catch { /* best effort at exit */ }
  }
  dirs.clear()
}
