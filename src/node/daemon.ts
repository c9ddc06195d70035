/**
 * The daemon as a process: `runForeground` takes the data dir's lock, clears a stale mount,
 * starts the node, serves the control socket, and on SIGINT/SIGTERM/SIGHUP (or a `stop` over
 * the socket) unmounts cleanly and returns. `startBackground` runs the same thing as a detached
 * child (`bazil start --foreground`) logging to `<home>/daemon.log` and waits until it answers;
 * `stopDaemon` asks a running daemon to stop and waits until its process is gone.
 */
import { spawn } from 'node:child_process'
import { appendFileSync, closeSync, openSync } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { BazilError, ErrorCode, isBazilError } from '../errors.ts'
import { tuneDaemonGc } from '../util/gc.ts'
import { logger } from '../util/log.ts'
import type { StatusReport } from './api.ts'
import { connectControl, serveControl } from './control.ts'
import type { ControlServer } from './control.ts'
import type { Home } from './home.ts'
import { acquireLock, isProcessAlive, lockHolder } from './lock.ts'

const log = logger('bazil:daemon')

export const START_TIMEOUT_MS = 30_000
export const STOP_TIMEOUT_MS = 120_000
const POLL_MS = 100
const LOG_TAIL_LINES = 20
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
const BIN = fileURLToPath(new URL('../../scripts/bazil.mjs', import.meta.url))

export interface DaemonOptions {
  home: Home
  mount: string
  /** Listen multiaddrs; undefined: the default (all interfaces, port 4011 or any free one). */
  listen?: string[]
  /** mDNS discovery on the LAN (default on). */
  mdns?: boolean
  /** No networking at all. */
  offline?: boolean
}

function networkArgs (options: DaemonOptions): string[] {
  return [
    ...(options.listen ?? []).flatMap(addr => ['--listen', addr]),
    ...(options.mdns === false ? ['--no-mdns'] : []),
    ...(options.offline === true ? ['--offline'] : [])
  ]
}

/** Runs the node in this process until it is stopped; resolves after a clean unmount. */
export async function runForeground (options: DaemonOptions & { onReady?: () => void }): Promise<void> {
  const { home, mount } = options
  tuneDaemonGc()
  const lock = await acquireLock(home.lockPath)
  const note = daemonLog(home.logPath)
  const startup = new AbortController()
  let requestStop!: () => void
  const stopRequested = new Promise<void>(resolve => { requestStop = resolve })
  let signalCount = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    signalCount++
    note(`received ${signal}`)
    if (signalCount > 1) {
      note('second signal: exiting without a clean unmount')
      process.exit(130)
    }
    startup.abort(new BazilError(ErrorCode.ABORTED, `interrupted by ${signal}`))
    requestStop()
  }
  for (const signal of SIGNALS) process.on(signal, onSignal)
  let server: ControlServer | undefined
  try {
    note(`starting: pid ${process.pid}, data dir ${home.dir}, mount ${mount}`)
    // Imported here, not at the top: `bazil --help` and `bazil status` never load FUSE or libp2p.
    const { recoverStaleMount } = await import('../fs/fuse.ts')
    if (await recoverStaleMount(mount)) note(`cleared a stale mount at ${mount}`)
    const { startNode } = await import('./node.ts')
    const node = await startNode({
      home,
      mount,
      signal: startup.signal,
      network: options.offline === true ? false : { ...(options.listen !== undefined ? { listen: options.listen } : {}), mdns: options.mdns !== false }
    })
    let stopping: Promise<void> | undefined
    const stop = async (): Promise<void> => { stopping ??= node.stop(); await stopping }
    server = await serveControl({
      status: async () => await node.status(),
      check: async checkOptions => await node.check(checkOptions),
      stop: async () => { requestStop(); await stop() },
      storeAdd: async (name, url) => await node.storeAdd(name, url),
      storeList: async () => await node.storeList(),
      storeRemove: async name => await node.storeRemove(name),
      ...(node.storePolicy !== undefined ? { storePolicy: node.storePolicy } : {}),
      get: async (path, o) => await node.get(path, o),
      push: async (path, store, o) => await node.push(path, store, o),
      peers: async () => await node.peers(),
      invite: async ttlMs => await node.invite(ttlMs),
      peersRemove: async peerId => await node.peersRemove(peerId),
      ...(node.peersRename !== undefined ? { peersRename: node.peersRename } : {}),
      ...(node.syncStatus !== undefined ? { syncStatus: node.syncStatus } : {}),
      ...(node.conflicts !== undefined ? { conflicts: node.conflicts } : {})
    }, home.socketPath)
    note('ready')
    options.onReady?.()
    await Promise.race([stopRequested, node.closed])
    note('stopping')
    await stop()
    await node.closed
  } catch (err) {
    note(`failed: ${err instanceof Error ? err.message : String(err)}`)
    throw err
  } finally {
    for (const signal of SIGNALS) process.off(signal, onSignal)
    await server?.close()
    await lock.release()
    note('stopped')
  }
}

/** Starts a detached daemon for `home` and resolves with its first status once it answers. */
/**
 * glibc reads these only at process start: allocations under 8 MiB from the heap and up to
 * 128 MiB of freed heap kept, so sealing does not page-fault every fresh buffer (nearly twice
 * the seal speed here; docs/DECISIONS.md "Large buffers: glibc malloc tunables").
 */
const MALLOC_TUNING = { MALLOC_MMAP_THRESHOLD_: '8388608', MALLOC_TRIM_THRESHOLD_: '134217728' }

export async function startBackground (options: DaemonOptions & { timeoutMs?: number }): Promise<StatusReport> {
  const { home, mount } = options
  const running = await lockHolder(home.lockPath)
  if (running !== undefined) throw new BazilError(ErrorCode.LOCKED, `a daemon (pid ${running}) is already running for this data dir`)
  const logFd = openSync(home.logPath, 'a', 0o600)
  const logStart = (await stat(home.logPath)).size
  let exited: string | undefined
  let child
  try {
    child = spawn(process.execPath, [BIN, '--home', home.dir, 'start', '--foreground', '--mount', mount, ...networkArgs(options)], {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      // Not the caller's cwd: the daemon must not keep it busy (e.g. a dir someone wants to unmount).
      cwd: '/',
      env: { ...process.env, ...MALLOC_TUNING }
    })
  } finally {
    closeSync(logFd)
  }
  child.once('exit', (code, signal) => { exited = signal !== null ? `was killed by ${signal}` : `exited with code ${code ?? '?'}` })
  child.once('error', err => { exited = `could not be started: ${err.message}` })
  child.unref()
  log('spawned daemon pid %d', child.pid)

  const deadline = Date.now() + (options.timeoutMs ?? START_TIMEOUT_MS)
  let lastError: unknown
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      throw new BazilError(ErrorCode.UNAVAILABLE, `the daemon ${exited} before it was ready. Its log (${home.logPath}) ends with:\n${await logTail(home.logPath, logStart)}`)
    }
    try {
      const client = await connectControl(home.socketPath, { connectTimeoutMs: 1_000 })
      try { return await client.status() } finally { client.close() }
    } catch (err) {
      lastError = err
    }
    await sleep(POLL_MS)
  }
  child.kill('SIGTERM')
  const why = isBazilError(lastError) && lastError.code !== ErrorCode.NOT_RUNNING ? ` (last error: ${lastError.message})` : ''
  throw new BazilError(ErrorCode.TIMEOUT,
    `the daemon (pid ${child.pid ?? '?'}) was not ready after ${Math.round((options.timeoutMs ?? START_TIMEOUT_MS) / 1000)} s${why}; it was sent SIGTERM. Its log (${home.logPath}) ends with:\n${await logTail(home.logPath, logStart)}`)
}

/** Asks the daemon of `home` to stop; resolves with its pid once the process is gone. */
export async function stopDaemon (home: Home, options: { timeoutMs?: number } = {}): Promise<{ pid: number }> {
  let client
  try {
    client = await connectControl(home.socketPath)
  } catch (err) {
    const holder = isBazilError(err, ErrorCode.NOT_RUNNING) ? await lockHolder(home.lockPath) : undefined
    if (holder === undefined) throw err
    throw new BazilError(ErrorCode.UNAVAILABLE,
      `a daemon (pid ${holder}) holds the lock but does not answer on its control socket; it may still be starting, or be stuck (kill ${holder})`)
  }
  let pid: number
  try {
    pid = (await client.ping()).pid
    await client.stop().catch(err => {
      // The daemon may close the connection as it exits; what counts is that it goes away.
      if (!isBazilError(err, ErrorCode.CLOSED)) throw err
    })
  } finally {
    client.close()
  }
  const deadline = Date.now() + (options.timeoutMs ?? STOP_TIMEOUT_MS)
  while (isProcessAlive(pid)) {
    if (Date.now() > deadline) throw new BazilError(ErrorCode.TIMEOUT, `the daemon (pid ${pid}) is still running ${Math.round((options.timeoutMs ?? STOP_TIMEOUT_MS) / 1000)} s after it was asked to stop`)
    await sleep(POLL_MS)
  }
  return { pid }
}

/** Appends timestamped lifecycle lines to the daemon's log (synchronously: they must survive an exit). */
function daemonLog (path: string): (line: string) => void {
  return line => {
    log(line)
    try { appendFileSync(path, `${new Date().toISOString()} [${process.pid}] ${line}\n`, { mode: 0o600 }) } catch (err) {
      log.error('cannot write %s: %O', path, err)
    }
  }
}

async function logTail (path: string, from: number): Promise<string> {
  try {
    const handle = await open(path, 'r')
    try {
      const size = (await handle.stat()).size
      const start = Math.max(from, size - 64 * 1024)
      const buffer = Buffer.alloc(size - start)
      await handle.read(buffer, 0, buffer.length, start)
      const lines = buffer.toString('utf8').trimEnd().split('\n').slice(-LOG_TAIL_LINES)
      return lines.length > 0 && lines.join('') !== '' ? lines.map(line => `  ${line}`).join('\n') : '  (nothing)'
    } finally {
      await handle.close()
    }
  } catch {
    return '  (the log could not be read)'
  }
}
