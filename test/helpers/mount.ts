/**
 * Mounted volumes for end-to-end tests. `startBazil()` drives the real CLI (`scripts/bazil.mjs`)
 * against a fresh data dir and mount point; `startBindfs()` mounts bindfs over a temp dir as a
 * reference FUSE file system; `startTarget()` picks one by BAZIL_TEST_TARGET (bazil | bindfs,
 * default bazil) so every suite can be validated on bindfs. Each helper registers its own
 * cleanup (stop, lazy unmount fallback, remove dirs); `useVolume()` wires one volume per suite.
 * `requireFuse()` turns a missing tool into a skip with its reason, or a failure under CI=true.
 */
import { spawn, spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, readFileSync, realpathSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, onTestFinished, test } from 'vitest'
import { tmpDir } from './tmp.ts'

export type TargetKind = 'bazil' | 'bindfs'

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
export const bazilCli = fileURLToPath(new URL('../../scripts/bazil.mjs', import.meta.url))

/** Guards against hangs only; never used to judge speed. */
const COMMAND_GUARD_MS = 120_000

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface BazilMount {
  home: string
  mount: string
  /** The daemon's pid, from `status --json` (the last known one if the daemon is dead). */
  pid: () => Promise<number>
  /** Runs the CLI with BAZIL_HOME set; never throws on a non-zero exit. */
  run: (args: string[], options?: { env?: NodeJS.ProcessEnv }) => Promise<RunResult>
  /** `bazil start --mount` over the same data dir; recovers a dead mount left by kill9(). */
  start: () => Promise<void>
  /** `bazil stop`, then makes sure the mount is gone. Idempotent. */
  stop: () => Promise<void>
  /** SIGKILLs the daemon and waits until it is gone; leaves the dead mount in place. */
  kill9: () => Promise<void>
  /** stop() if running, then start(). */
  /** Stops and starts again; `offline` starts it with --offline (no network at all). */
  restart: (options?: { offline?: boolean }) => Promise<void>
  /** Stops, unmounts and forgets the volume (what the registered cleanup runs). */
  dispose: () => Promise<void>
}

export interface BindfsMount {
  mount: string
  backing: string
  start: () => Promise<void>
  stop: () => Promise<void>
  dispose: () => Promise<void>
}

/** What a suite needs from either target. */
export interface TestVolume {
  kind: TargetKind
  mount: string
  /** Unmount and mount again over the same data (Bazil: `stop` + `start`). */
  remount: () => Promise<void>
  dispose: () => Promise<void>
  bazil?: BazilMount
  bindfs?: BindfsMount
}

export function testTarget (env: NodeJS.ProcessEnv = process.env): TargetKind {
  const value = env.BAZIL_TEST_TARGET ?? 'bazil'
  if (value !== 'bazil' && value !== 'bindfs') {
    throw new Error(`BAZIL_TEST_TARGET must be bazil or bindfs, got ${value}`)
  }
  return value
}

export function isCI (): boolean {
  return process.env.CI === 'true'
}

export function fuseAvailable (): { ok: boolean, why?: string } {
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK)
  } catch (err) {
    return { ok: false, why: `/dev/fuse is not usable (${errnoOf(err) ?? String(err)})` }
  }
  if (!onPath('fusermount') && !onPath('fusermount3') && process.getuid?.() !== 0) {
    return { ok: false, why: 'neither fusermount nor root (for umount) is available' }
  }
  return { ok: true }
}

/** FUSE plus whatever the chosen target needs. */
export function targetAvailable (kind: TargetKind = testTarget()): { ok: boolean, why?: string } {
  const fuse = fuseAvailable()
  if (!fuse.ok) return fuse
  if (kind === 'bindfs' && !onPath('bindfs')) {
    return { ok: false, why: 'bindfs is not installed (apt-get install bindfs)' }
  }
  if (kind === 'bazil' && !existsSync(bazilCli)) {
    return { ok: false, why: `${bazilCli} does not exist yet` }
  }
  return { ok: true }
}

/**
 * Call at collection time: `describe.runIf(requireFuse())(...)`. When the target cannot run it
 * registers a skipped test naming the reason, or under CI=true a failing one.
 */
export function requireFuse (kind: TargetKind = testTarget(), extra: string[] = []): boolean {
  let status = targetAvailable(kind)
  for (const tool of extra) {
    if (status.ok && !onPath(tool)) status = { ok: false, why: `${tool} is not installed` }
  }
  if (status.ok) return true
  const why = status.why ?? 'unknown reason'
  if (isCI()) {
    test(`FUSE target ${kind} is available`, () => {
      throw new Error(`CI=true and the ${kind} target cannot run: ${why}`)
    })
  } else {
    test.skip(`skipped: the ${kind} target cannot run here: ${why}`, () => {})
  }
  return false
}

export function onPath (tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0
}

export function errnoOf (err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') {
    return err.code
  }
  return undefined
}

export async function exec (
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv, cwd?: string, input?: string } = {}
): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd ?? repoRoot,
      stdio: ['pipe', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const guard = setTimeout(() => { child.kill('SIGKILL') }, COMMAND_GUARD_MS)
    child.on('error', (err) => { clearTimeout(guard); reject(err) })
    child.on('exit', (code, signal) => {
      clearTimeout(guard)
      // A daemon started by the command may still hold our pipes: do not wait for them to close.
      setImmediate(() => {
        child.stdout.destroy()
        child.stderr.destroy()
        resolve({ code, signal, stdout, stderr })
      })
    })
    // A command that exits without reading its input must not crash the test with EPIPE.
    child.stdin.on('error', () => {})
    child.stdin.end(options.input ?? '')
  })
}

export function isMounted (dir: string): boolean {
  let real: string
  try {
    real = realpathSync(dir)
  } catch (err) {
    // A dead FUSE mount cannot be resolved; fall back to the path as given.
    if (errnoOf(err) === 'ENOENT') return false
    real = dir
  }
  const table = readFileSync('/proc/self/mountinfo', 'utf8')
  return table.split('\n').some((line) => unescapeMount(line.split(' ')[4] ?? '') === real)
}

function unescapeMount (field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

/** Lazy unmount if still mounted (works on dead FUSE mounts too). */
export async function forceUnmount (dir: string): Promise<void> {
  if (!isMounted(dir)) return
  for (const [cmd, args] of [['fusermount', ['-uz', dir]], ['fusermount3', ['-uz', dir]], ['umount', ['-l', dir]]] as const) {
    if (!onPath(cmd)) continue
    await exec(cmd, [...args])
    if (!isMounted(dir)) return
  }
  throw new Error(`could not unmount ${dir}`)
}

// --- cleanup registration -------------------------------------------------------------------

const live = new Map<string, { pid?: number }>()
let exitSweepInstalled = false

function registerCleanup (fn: () => Promise<void>): void {
  try {
    onTestFinished(fn)
    return
  } catch { /* not inside a test */ }
  try {
    afterAll(fn)
  } catch { /* hooks closed (e.g. inside beforeAll): useVolume() or the exit sweep covers it */ }
}

function installExitSweep (): void {
  if (exitSweepInstalled) return
  exitSweepInstalled = true
  // Prepended so mounts go before tmp.ts's exit sweep removes their directories.
  process.prependListener('exit', () => {
    for (const [mount, state] of live) {
      if (state.pid !== undefined) {
        try { process.kill(state.pid, 'SIGKILL') } catch { /* already gone */ }
      }
      spawnSync('fusermount', ['-uz', mount], { stdio: 'ignore' })
      spawnSync('umount', ['-l', mount], { stdio: 'ignore' })
    }
  })
}

// --- Bazil ----------------------------------------------------------------------------------

export interface StartBazilOptions {
  /** Reuse an existing data dir (skips `init` unless `init: true`). */
  home?: string
  mount?: string
  init?: boolean
  env?: NodeJS.ProcessEnv
  /**
   * A command prefix for every CLI run, e.g. `['nsenter', '--net=/run/netns/NAME', '--']`; the
   * daemon that `start` spawns inherits it (see netns.ts).
   */
  wrap?: string[]
  /** Network flags for `start`, replacing the loopback-only `--listen /ip4/127.0.0.1/tcp/0 --no-mdns`. */
  startArgs?: string[]
}

export async function startBazil (options: StartBazilOptions = {}): Promise<BazilMount> {
  if (!existsSync(bazilCli)) throw new Error(`Bazil CLI missing: ${bazilCli}`)
  const home = options.home ?? await tmpDir('bazil-home-')
  const mount = options.mount ?? await tmpDir('bazil-mnt-')
  const state: { pid?: number } = {}
  live.set(mount, state)
  installExitSweep()
  let disposed = false

  const wrap = options.wrap ?? []
  const run = async (args: string[], runOptions: { env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> =>
    await exec(wrap[0] ?? process.execPath, [...wrap.slice(1), ...(wrap.length > 0 ? [process.execPath] : []), bazilCli, ...args], {
      env: { ...process.env, ...options.env, ...runOptions.env, BAZIL_HOME: home }
    })

  const must = async (args: string[]): Promise<RunResult> => {
    const result = await run(args)
    if (result.code !== 0) {
      const log = await readFile(`${home}/daemon.log`, 'utf8').catch(() => '(no daemon.log)')
      throw new Error(`bazil ${args.join(' ')} exited ${String(result.code ?? result.signal)}\n` +
        `stdout: ${result.stdout}\nstderr: ${result.stderr}\ndaemon.log (tail): ${log.slice(-4000)}`)
    }
    return result
  }

  const pid = async (): Promise<number> => {
    const result = await run(['status', '--json'])
    if (result.code === 0) {
      const report = JSON.parse(result.stdout) as { pid?: unknown }
      if (typeof report.pid === 'number') state.pid = report.pid
    }
    if (state.pid === undefined) throw new Error(`no daemon pid known (status: ${result.stderr})`)
    return state.pid
  }

  const start = async (startOptions: { offline?: boolean } = {}): Promise<void> => {
    // Loopback only and no mDNS: single-node tests send nothing onto the machine's networks.
    await must(['start', '--mount', mount, ...(options.startArgs ?? ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns']), ...(startOptions.offline === true ? ['--offline'] : [])])
    if (!isMounted(mount)) throw new Error(`bazil start returned but ${mount} is not mounted`)
    await pid()
  }

  const stop = async (): Promise<void> => {
    const known = state.pid
    if (known === undefined || processAlive(known)) {
      const result = await run(['stop'])
      if (known !== undefined && result.code !== 0 && processAlive(known)) {
        process.kill(known, 'SIGKILL')
        await waitForReaped(known)
      }
      if (known !== undefined) await waitForExit(known)
    }
    await forceUnmount(mount)
  }

  const kill9 = async (): Promise<void> => {
    const daemon = await pid()
    process.kill(daemon, 'SIGKILL')
    // Dead, but possibly still a zombie: init reaps orphans only after ~2 s on these VMs. Not
    // waiting for that on purpose, so the next start() meets what a user's `kill -9` leaves.
    await waitForExit(daemon)
  }

  const dispose = async (): Promise<void> => {
    if (disposed) return
    disposed = true
    try {
      await stop()
    } finally {
      live.delete(mount)
    }
    // tmpDir() cannot always register its own removal (e.g. when called inside beforeAll).
    if (options.mount === undefined) await rm(mount, { recursive: true, force: true })
    if (options.home === undefined) await rm(home, { recursive: true, force: true })
  }

  const handle: BazilMount = {
    home,
    mount,
    pid,
    run,
    start,
    stop,
    kill9,
    restart: async (startOptions) => { await stop(); await start(startOptions) },
    dispose
  }
  registerCleanup(dispose)
  try {
    if (options.home === undefined || options.init === true) await must(['init'])
    await start()
  } catch (err) {
    // Inside beforeAll no hook can be registered any more: clean up here.
    await dispose().catch(() => {})
    throw err
  }
  return handle
}

function processAlive (pid: number): boolean {
  try {
    // A zombie still answers kill(0) but is dead for our purposes.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const stateField = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return stateField !== 'Z' && stateField !== 'X'
  } catch {
    return false
  }
}

async function waitForExit (pid: number): Promise<void> {
  const deadline = Date.now() + COMMAND_GUARD_MS
  while (processAlive(pid)) {
    if (Date.now() > deadline) throw new Error(`process ${pid} did not exit`)
    await sleep(20)
  }
}

async function waitForReaped (pid: number): Promise<void> {
  const deadline = Date.now() + COMMAND_GUARD_MS
  while (existsSync(`/proc/${pid}`)) {
    if (Date.now() > deadline) return // let the caller's next step report what it sees
    await sleep(50)
  }
}

export async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

// --- bindfs ---------------------------------------------------------------------------------

export async function startBindfs (): Promise<BindfsMount> {
  const backing = await tmpDir('bazil-bindfs-src-')
  const mount = await tmpDir('bazil-bindfs-mnt-')
  live.set(mount, {})
  installExitSweep()
  let disposed = false
  const start = async (): Promise<void> => {
    // No kernel attribute/entry caching, so the reference shows what the file system holds
    // (with bindfs's default 1 s timeouts, hard links and renames show stale st_size/ctime).
    const result = await exec('bindfs', ['-o', 'attr_timeout=0,entry_timeout=0,negative_timeout=0', backing, mount])
    if (result.code !== 0 || !isMounted(mount)) {
      throw new Error(`bindfs failed (${String(result.code)}): ${result.stderr}`)
    }
  }
  const stop = async (): Promise<void> => {
    if (!isMounted(mount)) return
    await exec('fusermount', ['-u', mount])
    await forceUnmount(mount)
  }
  const dispose = async (): Promise<void> => {
    if (disposed) return
    disposed = true
    try { await stop() } finally { live.delete(mount) }
    await rm(mount, { recursive: true, force: true })
    await rm(backing, { recursive: true, force: true })
  }
  registerCleanup(dispose)
  try {
    await start()
  } catch (err) {
    await dispose().catch(() => {})
    throw err
  }
  return { mount, backing, start, stop, dispose }
}

// --- either target --------------------------------------------------------------------------

export async function startTarget (kind: TargetKind = testTarget()): Promise<TestVolume> {
  if (kind === 'bindfs') {
    const bindfs = await startBindfs()
    return {
      kind,
      mount: bindfs.mount,
      remount: async () => { await bindfs.stop(); await bindfs.start() },
      dispose: bindfs.dispose,
      bindfs
    }
  }
  const bazil = await startBazil()
  return { kind, mount: bazil.mount, remount: bazil.restart, dispose: bazil.dispose, bazil }
}

/** One volume for the enclosing suite: call at collection time, use the getter in tests. */
export function useVolume (kind: TargetKind = testTarget()): () => TestVolume {
  let volume: TestVolume | undefined
  beforeAll(async () => { volume = await startTarget(kind) })
  afterAll(async () => { await volume?.dispose() })
  return () => {
    if (volume === undefined) throw new Error('volume not started (did beforeAll fail?)')
    return volume
  }
}
