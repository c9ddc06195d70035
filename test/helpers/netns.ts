/**
 * Several computers on one machine: a LAN of network namespaces. Each node gets a namespace of
 * its own with one veth (`eth0`, 10.77.0.N/24) into a bridge that lives in a further namespace,
 * plus the multicast route without which mDNS between namespaces fails silently. Nothing is
 * created in the host's namespace, and the test range exists only inside these namespaces.
 *
 * - `useLan(names)`: one LAN for the enclosing suite; `start(name)` runs a Bazil daemon in a
 *   node's namespace (`nsenter --net`, so its FUSE mount stays visible here) with mDNS on, and
 *   the suite's end stops those daemons before deleting the namespaces.
 * - `partition(name)` / `heal(name)`: an nftables table inside the node's namespace that drops
 *   everything in and out of its `eth0` (as if its cable were pulled; the CLI still reaches the
 *   daemon over its unix socket).
 * - `requireNetns()`: root, ip, nsenter and nft, else a skip naming the reason (a failure under
 *   CI=true).
 *
 * Namespace names carry the test process's pid and a random suffix, so parallel runs do not
 * collide; a LAN is deleted when its suite ends, at process exit or SIGTERM, and by the sweep
 * of the next run if its process died before that.
 */
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { afterAll, beforeAll, onTestFinished, test } from 'vitest'
import { bazilCli, exec, isCI, onPath, startBazil } from './mount.ts'
import type { BazilMount, RunResult, StartBazilOptions } from './mount.ts'

const PREFIX = 'bzlan-'
const BRIDGE = 'br0'
const NODE_IFACE = 'eth0'
const SUBNET = '10.77.0'
const PARTITION_TABLE = 'bazil_partition'
/** The daemon's default port; every node has its own namespace, so all can use it. */
export const LAN_START_ARGS = ['--listen', '/ip4/0.0.0.0/tcp/4011']

export interface LanNode {
  name: string
  netns: string
  /** This node's address on the bridge. */
  addr: string
  /** Prefix that runs a command in the node's network namespace only. */
  wrap: string[]
}

export interface Lan {
  nodes: Map<string, LanNode>
  node: (name: string) => LanNode
  /** Initializes (unless `home` is given) and starts a daemon in the node's namespace, mDNS on. */
  start: (name: string, options?: Omit<StartBazilOptions, 'wrap' | 'startArgs'>) => Promise<BazilMount>
  /** Runs the Bazil CLI in the node's namespace (e.g. `join`, which needs no daemon). */
  bazil: (name: string, args: string[]) => Promise<RunResult>
  partition: (name: string) => Promise<void>
  heal: (name: string) => Promise<void>
  /** Stops the daemons started here, then deletes the namespaces. Idempotent. */
  destroy: () => Promise<void>
}

export function netnsAvailable (): { ok: boolean, why?: string } {
  if (process.getuid?.() !== 0) return { ok: false, why: 'network namespaces need root' }
  for (const [tool, pkg] of [['ip', 'iproute2'], ['nsenter', 'util-linux'], ['nft', 'nftables']] as const) {
    if (!onPath(tool)) return { ok: false, why: `${tool} is not installed (apt-get install ${pkg})` }
  }
  return { ok: true }
}

/** Call at collection time, like requireFuse(). */
export function requireNetns (): boolean {
  const status = netnsAvailable()
  if (status.ok) return true
  const why = status.why ?? 'unknown reason'
  if (isCI()) {
    test('network namespaces are available', () => { throw new Error(`CI=true and network namespaces cannot be made: ${why}`) })
  } else {
    test.skip(`skipped: network namespaces cannot be made here: ${why}`, () => {})
  }
  return false
}

/** One LAN for the enclosing suite: call at collection time, use the getter in hooks and tests. */
export function useLan (names: string[]): () => Lan {
  let lan: Lan | undefined
  beforeAll(async () => { lan = await createLan(names) })
  afterAll(async () => { await lan?.destroy() })
  return () => {
    if (lan === undefined) throw new Error('LAN not created (did beforeAll fail?)')
    return lan
  }
}

const liveNamespaces = new Set<string>()
let exitSweepInstalled = false

export async function createLan (names: string[]): Promise<Lan> {
  for (const name of names) {
    if (!/^[a-z][a-z0-9]{0,9}$/.test(name) || name === 'br') throw new Error(`bad node name ${name}`)
  }
  if (names.length === 0 || names.length > 250) throw new Error('a LAN has 1 to 250 nodes')
  await sweepStale()
  installExitSweep()
  const id = `${PREFIX}${process.pid}-${randomBytes(3).toString('hex')}`
  const bridgeNs = `${id}-br`
  const created: string[] = []
  const disposers: Array<() => Promise<void>> = []
  const nodes = new Map<string, LanNode>(names.map((name, i) => {
    const netns = `${id}-${name}`
    return [name, { name, netns, addr: `${SUBNET}.${i + 1}`, wrap: ['nsenter', `--net=/run/netns/${netns}`, '--'] }]
  }))
  const node = (name: string): LanNode => {
    const found = nodes.get(name)
    if (found === undefined) throw new Error(`no node ${name} on this LAN`)
    return found
  }
  const addNetns = async (netns: string): Promise<void> => {
    // Recorded before it exists: a half-made namespace is deleted too.
    created.push(netns)
    liveNamespaces.add(netns)
    await must('ip', ['netns', 'add', netns])
    await must('ip', ['-n', netns, 'link', 'set', 'lo', 'up'])
  }

  let destroyed = false
  const destroy = async (): Promise<void> => {
    if (destroyed) return
    destroyed = true
    const errors: unknown[] = []
    // Daemons first, while their namespaces still exist (their `stop` runs there too).
    for (const dispose of disposers.reverse()) {
      try { await dispose() } catch (err) { errors.push(err) }
    }
    for (const netns of created.reverse()) {
      const result = await exec('ip', ['netns', 'del', netns])
      if (result.code === 0 || !namespaceExists(netns)) liveNamespaces.delete(netns)
      else errors.push(new Error(`ip netns del ${netns}: ${result.stderr}`))
    }
    if (errors.length > 0) throw new AggregateError(errors, 'tearing down the LAN failed')
  }

  // Registered before anything exists. Inside beforeAll vitest ignores new hooks: useLan()'s
  // afterAll and the exit sweep cover that case.
  afterward(destroy)
  try {
    await addNetns(bridgeNs)
    await must('ip', ['-n', bridgeNs, 'link', 'add', BRIDGE, 'type', 'bridge'])
    await must('ip', ['-n', bridgeNs, 'link', 'set', BRIDGE, 'up'])
    for (const { name, netns, addr } of nodes.values()) {
      await addNetns(netns)
      // Made inside the bridge's namespace with its peer placed straight into the node's.
      const port = `v-${name}`
      await must('ip', ['-n', bridgeNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', NODE_IFACE, 'netns', netns])
      await must('ip', ['-n', bridgeNs, 'link', 'set', port, 'master', BRIDGE])
      await must('ip', ['-n', bridgeNs, 'link', 'set', port, 'up'])
      await must('ip', ['-n', netns, 'addr', 'add', `${addr}/24`, 'dev', NODE_IFACE])
      await must('ip', ['-n', netns, 'link', 'set', NODE_IFACE, 'up'])
      // Without it, mDNS between namespaces fails silently (TESTING.md).
      await must('ip', ['-n', netns, 'route', 'add', '224.0.0.0/4', 'dev', NODE_IFACE])
    }
  } catch (err) {
    await destroy().catch(() => {})
    throw err
  }

  const inNode = async (name: string, command: string, args: string[], input?: string): Promise<RunResult> => {
    const [wrapper, ...prefix] = node(name).wrap as [string, ...string[]]
    return await exec(wrapper, [...prefix, command, ...args], input === undefined ? {} : { input })
  }

  return {
    nodes,
    node,
    start: async (name, options = {}) => {
      if (destroyed) throw new Error('the LAN is gone')
      const handle = await startBazil({ ...options, wrap: node(name).wrap, startArgs: LAN_START_ARGS })
      disposers.push(handle.dispose)
      return handle
    },
    bazil: async (name, args) => await inNode(name, process.execPath, [bazilCli, ...args]),
    partition: async (name) => {
      const rules = `table inet ${PARTITION_TABLE} {
        chain input { type filter hook input priority 0; policy accept; iifname "${NODE_IFACE}" drop; }
        chain output { type filter hook output priority 0; policy accept; oifname "${NODE_IFACE}" drop; }
      }\n`
      await checked(await inNode(name, 'nft', ['-f', '-'], rules), `nft partition of ${name}`)
    },
    heal: async (name) => {
      await checked(await inNode(name, 'nft', ['delete', 'table', 'inet', PARTITION_TABLE]), `nft heal of ${name}`)
    },
    destroy
  }
}

function afterward (cleanup: () => Promise<void>): void {
  try {
    onTestFinished(cleanup)
  } catch {
    try { afterAll(cleanup) } catch { /* see the caller */ }
  }
}

async function must (command: string, args: string[]): Promise<RunResult> {
  return checked(await exec(command, args), `${command} ${args.join(' ')}`)
}

function checked (result: RunResult, what: string): RunResult {
  if (result.code !== 0) throw new Error(`${what} exited ${String(result.code ?? result.signal)}: ${result.stderr.trim()}`)
  return result
}

function listNamespaces (): string[] {
  const result = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  // Lines look like `NAME` or `NAME (id: 3)`.
  return (result.stdout ?? '').split('\n').map(line => line.split(' ')[0] ?? '').filter(name => name !== '')
}

function namespaceExists (netns: string): boolean {
  return listNamespaces().includes(netns)
}

/**
 * Ends what is left inside one of our namespaces (daemons started there by a test) and deletes
 * it. Synchronous, for exit handlers.
 */
function removeNamespaceSync (netns: string): void {
  const pids = spawnSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' }).stdout ?? ''
  for (const pid of pids.split('\n').map(Number).filter(n => Number.isInteger(n) && n > 0)) {
    // SIGTERM: a Bazil daemon unmounts its volume on the way out.
    try { process.kill(pid, 'SIGTERM') } catch { /* already gone */ }
  }
  spawnSync('ip', ['netns', 'del', netns], { stdio: 'ignore' })
}

/** Namespaces of earlier runs whose test process is gone (pid in the name). */
async function sweepStale (): Promise<void> {
  for (const netns of listNamespaces()) {
    const owner = new RegExp(`^${PREFIX}(\\d+)-[0-9a-f]+-`).exec(netns)?.[1]
    if (owner === undefined || processExists(Number(owner))) continue
    removeNamespaceSync(netns)
  }
}

function processExists (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function installExitSweep (): void {
  if (exitSweepInstalled) return
  exitSweepInstalled = true
  const sweep = (): void => {
    for (const netns of liveNamespaces) removeNamespaceSync(netns)
    liveNamespaces.clear()
  }
  // Appended, so mount.ts's exit sweep (prepended) has stopped the daemons first.
  process.once('exit', sweep)
  // vitest ends its workers with SIGTERM, which skips 'exit' (see tmp.ts).
  process.once('SIGTERM', signal => {
    sweep()
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
  })
}
