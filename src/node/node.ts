/**
 * Wires one node together: the local chunk store, the CAS over it, the metadata store, the
 * volume and its FUSE mount, and the reports the control socket serves. This is the only place
 * that picks concrete pieces.
 */
import { readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { LocalStore } from '../kv/local.ts'
import { hasCapability } from '../kv/kv.ts'
import { Cas } from '../cas/cas.ts'
import { deriveContentKeys } from '../cas/keys.ts'
import { Sealer } from '../cas/sealer.ts'
import { MetaStore } from '../fs/meta.ts'
import { Volume } from '../fs/volume.ts'
import { mountVolume } from '../fs/fuse.ts'
import type { Mount } from '../fs/fuse.ts'
import type { Home } from './home.ts'
import type { CheckReport, NodeApi, PeerInfo, PolicyReport, StatusReport, StoreInfo, TransferOptions, SyncReport } from './api.ts'
import { StoreSet } from './store-set.ts'
import { startNetwork } from './network.ts'
import type { Network, NetworkOptions } from './network.ts'
import { LOCAL_STORE_NAME, openStore, parseCopies, parseStore, readPolicy, readStores, writePolicy, writeStores } from './stores.ts'
import { transfer } from './transfer.ts'
import { Prefetcher } from './prefetch.ts'
import { BazilError, ErrorCode, isBazilError } from '../errors.ts'
import { open as openSealed } from '../cas/seal.ts'
import { checkVolume, volumeStats } from './check.ts'
import { logger } from '../util/log.ts'
import { VolumeSync } from './volume-sync.ts'
import type { ConflictReport } from './volume-sync.ts'
import { Syncer } from './syncer.ts'
import type { PeerSyncStatus } from './syncer.ts'
import { MAX_RECORD_BYTES } from '../../protocols/changes/index.ts'

const log = logger('bazil:node')
/** How long `store list` waits for a store to count what it holds. */
const STORE_STAT_TIMEOUT_MS = 5000

/**
 * `BAZIL_REROUTE_AFTER_MS`: how long a store the policy picked may keep failing before its
 * queued objects go to other stores (default 10 minutes; tests set it small).
 */
function rerouteAfter (env: NodeJS.ProcessEnv): { rerouteAfterMs?: number } {
  const text = env.BAZIL_REROUTE_AFTER_MS
  if (text === undefined || text === '') return {}
  if (!/^[0-9]+$/.test(text)) throw new BazilError(ErrorCode.INVALID, `BAZIL_REROUTE_AFTER_MS must be a number of milliseconds (got "${text}")`)
  return { rerouteAfterMs: Number(text) }
}

/**
 * `BAZIL_WRITE_BEHIND_BYTES`: the mount's write-behind budget (default WRITE_BEHIND_BYTES in
 * src/fs/fuse.ts; 0 turns write-behind off, e.g. to compare).
 */
function writeBehind (env: NodeJS.ProcessEnv): { writeBehindBytes?: number } {
  const text = env.BAZIL_WRITE_BEHIND_BYTES
  if (text === undefined || text === '') return {}
  if (!/^[0-9]+$/.test(text)) throw new BazilError(ErrorCode.INVALID, `BAZIL_WRITE_BEHIND_BYTES must be a number of bytes (got "${text}")`)
  return { writeBehindBytes: Number(text) }
}

export interface StartOptions {
  home: Home
  mount: string
  signal?: AbortSignal
  /** libp2p networking (peers, pairing, block exchange); false leaves the node offline. */
  network?: NetworkOptions | false
}

export interface RunningNode extends NodeApi {
  volume: Volume
  closed: Promise<void>
}

export async function startNode (options: StartOptions): Promise<RunningNode> {
  const { home } = options
  await clearStaging(home.stagingDir)
  const local = await LocalStore.open(home.storeDir, { emptyIsTorn: true })
  const keys = deriveContentKeys(home.ownerSecret)
  // Checks a copy from another store; the opened chunk goes to the CAS's cache, so the read
  // that asked for it does not open it again. A large one is opened on the seal worker.
  const sealer = new Sealer(keys)
  let cas: Cas | undefined
  const validate = async (key: Uint8Array, sealed: Uint8Array): Promise<boolean> => {
    try {
      if (cas !== undefined) await cas.admit(key, sealed)
      else openSealed(keys, key, sealed)
    } catch (err) {
      if (isBazilError(err, 'CORRUPT')) return false
      throw err
    }
    return true
  }
  const store = await StoreSet.open(local, home.dir, await readStores(home.dir), validate, {
    copies: (await readPolicy(home.dir)).copies,
    ...rerouteAfter(process.env)
  })
  cas = new Cas(store, keys, { sealer })
  const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }
  const meta = await MetaStore.open(home.dbDir, owner)
  const volume = new Volume({ meta, cas, stagingDir: home.stagingDir, storeDir: home.storeDir, owner })
  await volume.recover()
  const volumeSync = await VolumeSync.open(home.identity.peerId, volume)
  /** Fires when the node starts to stop: long requests (get, push, check) end at once. */
  const lifetime = new AbortController()
  let network: Network | undefined
  let syncer: Syncer | undefined
  if (options.network !== false) {
    network = await startNetwork(home, local, options.network ?? {}, {
      source: {
        volume: Buffer.from(home.volume.id, 'hex'),
        head: () => volumeSync.engine.head(),
        read: async (since, limit, maxBytes) => volumeSync.engine.read(since, limit, Math.max(maxBytes, MAX_RECORD_BYTES))
      },
      onHead: (peer, head) => { syncer?.heard(peer, head) },
      onServed: (peer, upTo) => { syncer?.served(peer, upTo) }
    })
    const net = network
    const refreshPeers = (): void => { store.setPeers(net.peerStores()) }
    net.onPeersChanged(refreshPeers)
    refreshPeers()
    const prefetcher = new Prefetcher({ cas, local, reader: store, signal: lifetime.signal })
    syncer = new Syncer({
      sync: volumeSync,
      changes: net.changes,
      connectedPeers: () => net.connectedPaired(),
      pairedPeers: () => net.pairedPeers(),
      onApplied: records => { prefetcher.offer(records) }
    })
    const sync = syncer
    net.onPairedConnect(peer => { sync.connected(peer) })
    for (const peer of net.connectedPaired()) sync.connected(peer)
  }
  let mount: Mount
  try {
    mount = await mountVolume(volume, options.mount, { fsname: `bazil:${home.volume.name}`, ...writeBehind(process.env) })
  } catch (err) {
    await network?.stop()
    await meta.close()
    await store.close()
    await sealer.close()
    throw err
  }
  log('mounted volume %s at %s', home.volume.name, options.mount)
  const startedAt = new Date().toISOString()

  let resolveClosed: () => void = () => {}
  const closed = new Promise<void>(resolve => { resolveClosed = resolve })
  let stopping: Promise<void> | undefined

  const stop = async (): Promise<void> => {
    stopping ??= (async () => {
      lifetime.abort(new BazilError(ErrorCode.CLOSED, 'the daemon is stopping'))
      try {
        await mount.unmount()
      } catch (err) {
        log.error('unmount failed: %s', (err as Error).message)
      }
      syncer?.stop()
      await volume.close()
      await network?.stop().catch((err: unknown) => { log.error('stopping the network: %s', (err as Error).message) })
      await meta.close()
      await store.close()
      await sealer.close()
      log('stopped')
      resolveClosed()
    })()
    await stopping
  }

  const status = async (): Promise<StatusReport> => {
    const stored = await local.stat()
    const backlog = await store.backlog()
    const stats = volumeStats(volume)
    return {
      home: home.dir,
      volume: home.volume.name,
      mount: options.mount,
      pid: process.pid,
      peerId: home.identity.peerId,
      chunks: stored.objects,
      storedBytes: stored.bytes,
      logicalBytes: stats.logicalBytes,
      files: stats.files,
      directories: stats.directories,
      startedAt,
      replication: backlog.map(b => ({ store: b.name, pending: b.pending, ...(b.rerouted > 0 ? { rerouted: b.rerouted } : {}), ...(b.lastError !== undefined ? { lastError: b.lastError } : {}) })),
      copies: (await readPolicy(home.dir)).copies,
      underReplicated: await store.underReplicated(),
      peers: network?.peers() ?? [],
      listen: network?.addrs() ?? [],
      sync: syncStatusNow()
    }
  }

  const syncStatusNow = (): SyncReport => ({
    head: volumeSync.engine.head(),
    waiting: volumeSync.engine.waiting(),
    conflicts: volumeSync.engine.conflicts().length,
    peers: syncer?.status() ?? []
  })
  const syncStatus = async (wait?: { timeoutMs: number }): Promise<SyncReport> => {
    if (wait !== undefined) {
      if (syncer === undefined) offline()
      await syncer?.waitForSync(wait.timeoutMs)
    }
    return syncStatusNow()
  }
  const conflicts = async (): Promise<ConflictReport[]> => volumeSync.conflicts()

  const offline = (): never => { throw new BazilError(ErrorCode.UNAVAILABLE, 'this node runs offline (started with --offline)') }
  const peers = async (): Promise<PeerInfo[]> => network?.peers() ?? []
  const invite = async (ttlMs?: number): Promise<{ code: string, expiresAt: number }> => (network ?? offline()).invite(ttlMs)
  const peersRemove = async (peerId: string): Promise<PeerInfo[]> => {
    if (!await (network ?? offline()).removePeer(peerId)) throw new BazilError(ErrorCode.NOT_FOUND, `${peerId} is not a paired peer`)
    return await peers()
  }

  const peersRename = async (peerId: string, name: string): Promise<PeerInfo[]> => {
    await (network ?? offline()).renamePeer(peerId, name)
    return await peers()
  }

  /** Objects and bytes a store holds, if it can say so quickly (S3 lists, SFTP walks its tree). */
  const held = async (name: string): Promise<{ objects: number, bytes: number } | undefined> => {
    const kv = store.store(name)
    if (kv === undefined || !hasCapability(kv, 'stat')) return undefined
    try {
      return await kv.stat({ signal: AbortSignal.timeout(STORE_STAT_TIMEOUT_MS) })
    } catch {
      return undefined
    }
  }

  const storeList = async (): Promise<StoreInfo[]> => {
    const configs = await readStores(home.dir)
    const health = new Map(store.status().map(s => [s.name, s]))
    const backlog = new Map((await store.backlog()).map(b => [b.name, b]))
    const names = [LOCAL_STORE_NAME, ...configs.map(c => c.name)]
    const holdings = new Map(await Promise.all(names.map(async name => [name, await held(name)] as const)))
    const info = (name: string, url: string): StoreInfo => {
      const h = health.get(name)
      const b = backlog.get(name)
      const holding = holdings.get(name)
      return {
        name,
        url,
        ...(holding !== undefined ? { objects: holding.objects, bytes: holding.bytes } : {}),
        state: store.openErrors.has(name) ? 'unavailable' : h?.state ?? 'unavailable',
        ...(h?.latencyMs !== undefined ? { latencyMs: h.latencyMs } : {}),
        ...(h?.bytesPerMs !== undefined ? { bytesPerMs: h.bytesPerMs } : {}),
        pending: b?.pending ?? 0,
        ...(h !== undefined ? { counters: h.counters } : {}),
        ...(store.openErrors.has(name) ? { lastError: store.openErrors.get(name) } : b?.lastError !== undefined ? { lastError: b.lastError } : {})
      }
    }
    return [info(LOCAL_STORE_NAME, home.storeDir), ...configs.map(c => info(c.name, c.url))]
  }

  const storeAdd = async (name: string, url: string): Promise<StoreInfo[]> => {
    const config = parseStore(name, url)
    const configs = await readStores(home.dir)
    if (configs.some(c => c.name === name)) throw new BazilError(ErrorCode.EXISTS, `a store named ${name} exists`)
    // Open it once here so that a wrong URL, key or host is a clear error now, not a log line;
    // an SFTP host key seen for the first time is pinned in the config.
    const probe = await openStore(config, { homeDir: home.dir, onHostKey: async hostKey => { config.hostKey = hostKey } })
    await probe.close()
    const next = [...configs, config]
    await writeStores(home.dir, next)
    await store.reconfigure(next)
    // Under a numeric policy the new store may be picked for objects stored already.
    if ((await readPolicy(home.dir)).copies !== 'all') await store.requeue()
    return await storeList()
  }

  const storePolicy = async (setting?: string): Promise<PolicyReport> => {
    if (setting !== undefined) {
      const copies = parseCopies(setting)
      await writePolicy(home.dir, { copies })
      store.setCopies(copies)
      await store.requeue()
    }
    return { copies: (await readPolicy(home.dir)).copies, stores: 1 + (await readStores(home.dir)).length, underReplicated: await store.underReplicated() }
  }

  const storeRemove = async (name: string): Promise<StoreInfo[]> => {
    const configs = await readStores(home.dir)
    if (!configs.some(c => c.name === name)) throw new BazilError(ErrorCode.NOT_FOUND, `no store named ${name}`)
    const next = configs.filter(c => c.name !== name)
    await writeStores(home.dir, next)
    // The queue drops what was still to copy to the removed store; under a numeric policy its
    // share of the objects moves to the stores that are now picked for them.
    await store.reconfigure(next)
    if ((await readPolicy(home.dir)).copies !== 'all') await store.requeue()
    return await storeList()
  }

  /**
   * Runs a long request under the caller's signal and the node's lifetime: a stop aborts it,
   * and the caller learns that the daemon stopped (CLOSED), not that it was interrupted.
   */
  const untilStop = async <T>(what: string, signal: AbortSignal | undefined, run: (signal: AbortSignal) => Promise<T>): Promise<T> => {
    if (lifetime.signal.aborted) throw new BazilError(ErrorCode.CLOSED, `${what}: the daemon is stopping`)
    try {
      return await run(signal === undefined ? lifetime.signal : AbortSignal.any([signal, lifetime.signal]))
    } catch (err) {
      if (!lifetime.signal.aborted || signal?.aborted === true) throw err
      throw new BazilError(ErrorCode.CLOSED, `${what} stopped before it finished: the daemon is stopping (run it again after \`bazil start\`: it resumes)`, { cause: err })
    }
  }

  const get = async (path: string, o: TransferOptions = {}) =>
    await untilStop('get', o.signal, async signal =>
      await transfer({ volume, cas, path, source: store.reader, destination: local, sources: store.others(), ...o, signal }))

  const push = async (path: string, name: string, o: TransferOptions = {}) => {
    const destination = store.store(name)
    if (destination === undefined) throw new BazilError(ErrorCode.NOT_FOUND, `no store named ${name} (see bazil store list)`)
    return await untilStop('push', o.signal, async signal =>
      await transfer({ volume, cas, path, source: store.reader, destination, ...o, signal }))
  }

  const check = async (checkOptions?: { signal?: AbortSignal }): Promise<CheckReport> =>
    await untilStop('check', checkOptions?.signal, async signal => await checkVolume(volume, cas, { signal }))

  return { volume, closed, stop, status, check, storeAdd, storeList, storeRemove, storePolicy, get, push, peers, invite, peersRemove, peersRename, syncStatus, conflicts }
}

/** Staging files of a previous run hold nothing committed: remove them. */
async function clearStaging (dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  await Promise.all(names.map(async name => { await rm(join(dir, name), { force: true, recursive: true }) }))
}
