/**
 * The KV the CAS uses: writes and `has` go to the local store (content lands locally first, and
 * dedup must mean "we have it here"); reads go through the fan-out over the local store and the
 * volume's other stores; every write is queued for replication to the stores the policy picks
 * for it (`copies`, see stores.ts), and re-routed to the next stores in the object's order when
 * a picked one has been failing for `rerouteAfterMs`. Stores can be added and removed and the
 * policy changed while the node runs (`reconfigure`, `setCopies` + `requeue`); a removed store's
 * queue goes with it.
 */
import { join } from 'node:path'
import { FanoutStore } from '../kv/fanout.ts'
import type { FanoutMember, MemberStatus } from '../kv/fanout.ts'
import { DEFAULT_REROUTE_AFTER_MS, ReplicationQueue } from '../kv/replication.ts'
import type { TargetBacklog } from '../kv/replication.ts'
import { hasCapability } from '../kv/kv.ts'
import type { KV, KVDelete, KVFlush, KVHas, KVOptions, KVPutOptions } from '../kv/kv.ts'
import type { LocalStore } from '../kv/local.ts'
import { BazilError, ErrorCode } from '../errors.ts'
import { logger } from '../util/log.ts'
import { LOCAL_STORE_NAME, fallbacksFor, openStore, readStores, replicasFor, writeStores } from './stores.ts'
import type { Copies, OpenedStore, StoreConfig } from './stores.ts'

const log = logger('bazil:stores')

export interface StoreSetOptions {
  /** The replication policy (default 'all'). */
  copies?: Copies
  /** How long a picked store may fail before its queued objects go to other stores, ms. */
  rerouteAfterMs?: number
}

export class StoreSet implements KV, KVHas, KVFlush {
  private fanout: FanoutStore
  private remotes: OpenedStore[] = []
  private peers: FanoutMember[] = []
  private queue: ReplicationQueue | undefined
  private copies: Copies = 'all'
  private rerouteAfterMs = DEFAULT_REROUTE_AFTER_MS
  /** Why a configured store could not be opened, by name. */
  readonly openErrors = new Map<string, string>()

  private constructor (
    readonly local: LocalStore,
    private readonly homeDir: string,
    private readonly validate: (key: Uint8Array, value: Uint8Array) => boolean | Promise<boolean>
  ) {
    this.fanout = new FanoutStore([{ name: LOCAL_STORE_NAME, kv: local, primary: true }])
  }

  static async open (local: LocalStore, homeDir: string, configs: StoreConfig[], validate: (key: Uint8Array, value: Uint8Array) => boolean | Promise<boolean>, options: StoreSetOptions = {}): Promise<StoreSet> {
    const set = new StoreSet(local, homeDir, validate)
    set.copies = options.copies ?? 'all'
    set.rerouteAfterMs = options.rerouteAfterMs ?? DEFAULT_REROUTE_AFTER_MS
    await set.reconfigure(configs)
    return set
  }

  /**
   * Opens the configured stores. A store that cannot be opened now (its server is down, its
   * host key changed) stays in the set behind a `ReopeningStore`: writes are still queued for
   * it, and every use tries to open it again until that works; why it failed is in `openErrors`.
   */
  async reconfigure (configs: StoreConfig[]): Promise<void> {
    const opened: OpenedStore[] = []
    for (const name of [...this.openErrors.keys()]) if (!configs.some(c => c.name === name)) this.openErrors.delete(name)
    for (const config of configs) {
      const open = async (): Promise<OpenedStore> => await openStore(config, {
        homeDir: this.homeDir,
        onHostKey: async hostKey => { await pinHostKey(this.homeDir, config.name, hostKey) }
      })
      try {
        opened.push(await open())
        this.openErrors.delete(config.name)
      } catch (err) {
        log.error('store %s (%s) could not be opened: %s; trying again when used', config.name, config.url, (err as Error).message)
        this.openErrors.set(config.name, (err as Error).message)
        const reopening = new ReopeningStore(open, err => {
          if (err === undefined) this.openErrors.delete(config.name)
          else this.openErrors.set(config.name, err.message)
        })
        opened.push({ config, kv: reopening, close: async () => { await reopening.close() } })
      }
    }
    const old = { remotes: this.remotes, queue: this.queue }
    this.remotes = opened
    this.rebuildFanout()
    await old.queue?.stop()
    this.queue = await ReplicationQueue.open(join(this.homeDir, 'replication'), {
      source: this.local,
      targets: new Map(opened.map(s => [s.config.name, s.kv])),
      reroute: { afterMs: this.rerouteAfterMs, fallbacks: key => fallbacksFor(key, this.remoteNames(), this.copies) }
    })
    this.queue.start()
    await Promise.all(old.remotes.map(async s => { await s.close().catch(() => {}) }))
  }

  /** Paired peers, read from (never written to: they keep their own copies). */
  setPeers (peers: FanoutMember[]): void {
    this.peers = peers
    this.rebuildFanout()
  }

  private rebuildFanout (): void {
    const members: FanoutMember[] = [
      { name: LOCAL_STORE_NAME, kv: this.local, primary: true },
      ...this.remotes.map(s => ({ name: s.config.name, kv: s.kv })),
      ...this.peers
    ]
    // Checking every copy costs a second decryption: only worth it when copies come from elsewhere.
    // What a peer or a remote store answered is kept locally (as after `bazil get`), and not
    // queued for replication: it came from a store.
    this.fanout = new FanoutStore(members, members.length > 1 ? { validate: this.validate, keep: true } : {}, this.fanout)
  }

  /** The store named `name` (the local one included). */
  store (name: string): KV | undefined {
    if (name === LOCAL_STORE_NAME) return this.local
    return this.remotes.find(s => s.config.name === name)?.kv
  }

  /** Reads from any store. */
  get reader (): KV { return this.fanout }

  /** Every store and peer besides the local store, by name (what `get` may fetch from). */
  others (): Array<{ name: string, kv: KV }> {
    return [...this.remotes.map(s => ({ name: s.config.name, kv: s.kv })), ...this.peers.map(p => ({ name: p.name, kv: p.kv }))]
  }

  status (): MemberStatus[] { return this.fanout.status() }

  async backlog (): Promise<TargetBacklog[]> { return await this.queue?.backlog() ?? [] }

  /** Objects that some store the policy picked for them still lacks. */
  async underReplicated (): Promise<number> { return await this.queue?.underReplicated() ?? 0 }

  /** The replication policy for new writes; `requeue()` applies it to what is stored already. */
  setCopies (copies: Copies): void { this.copies = copies }

  /**
   * Queues every object of the local store for the stores the policy picks for it, and drops
   * its entries for the stores the policy no longer picks (after `copies` was lowered, or a
   * store added). Entries a re-route moved are among those dropped; while their store still
   * fails they are re-routed again.
   */
  async requeue (options?: KVOptions): Promise<void> {
    const queue = this.queue
    if (queue === undefined || this.remotes.length === 0) return
    const names = this.remoteNames()
    let batch: Array<{ key: Uint8Array, targets: string[] }> = []
    for await (const key of this.local.keys(options)) {
      batch.push({ key, targets: replicasFor(key, names, this.copies) })
      if (batch.length >= 1024) { await queue.replaceMany(batch); batch = [] }
    }
    await queue.replaceMany(batch)
  }

  private remoteNames (): string[] { return this.remotes.map(s => s.config.name) }

  async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    return await this.fanout.get(key, options)
  }

  async has (key: Uint8Array, options?: KVOptions): Promise<boolean> {
    return await this.local.has(key, options)
  }

  async put (key: Uint8Array, value: Uint8Array, options?: KVPutOptions): Promise<void> {
    await this.local.put(key, value, options)
    if (this.remotes.length > 0) await this.queue?.enqueue(key, replicasFor(key, this.remoteNames(), this.copies))
  }

  async flush (options?: KVOptions): Promise<void> {
    await this.local.flush(options)
  }

  async close (): Promise<void> {
    await this.queue?.stop()
    await Promise.all(this.remotes.map(async s => { await s.close().catch(() => {}) }))
    await this.local.close()
  }
}

/**
 * A store that could not be opened: each operation opens it first (one attempt at a time; a
 * failed attempt is retried by the next operation), then delegates. The fan-out's breaker and
 * the replication queue's backoff keep the attempts from piling up.
 */
class ReopeningStore implements KV, KVHas, KVDelete {
  #opened: Promise<OpenedStore> | undefined

  constructor (private readonly open: () => Promise<OpenedStore>, private readonly onResult: (err?: Error) => void) {}

  private async store (): Promise<KV> {
    this.#opened ??= this.open().then(store => { this.onResult(); return store }, (err: unknown) => {
      this.#opened = undefined
      this.onResult(err as Error)
      // Whatever stopped the open (even a missing key file's NOT_FOUND) says nothing about the object.
      throw new BazilError(ErrorCode.UNAVAILABLE, `the store could not be opened: ${(err as Error).message}`, { cause: err })
    })
    return (await this.#opened).kv
  }

  async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> { return await (await this.store()).get(key, options) }
  async put (key: Uint8Array, value: Uint8Array, options?: KVPutOptions): Promise<void> { await (await this.store()).put(key, value, options) }
  async has (key: Uint8Array, options?: KVOptions): Promise<boolean> {
    const kv = await this.store()
    return hasCapability(kv, 'has') ? await kv.has(key, options) : false
  }

  async delete (key: Uint8Array, options?: KVOptions): Promise<void> {
    const kv = await this.store()
    if (hasCapability(kv, 'delete')) await kv.delete(key, options)
  }

  async close (): Promise<void> {
    const store = await this.#opened?.catch(() => undefined)
    this.#opened = undefined
    await store?.close()
  }
}

/** Saves an SFTP host key seen on first use, so every later connection is checked against it. */
async function pinHostKey (homeDir: string, name: string, hostKey: string): Promise<void> {
  const configs = await readStores(homeDir)
  await writeStores(homeDir, configs.map(c => c.name === name ? { ...c, hostKey } : c))
  log('pinned the host key of store %s', name)
}
