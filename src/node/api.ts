/**
 * What a running node offers the control socket (and so the CLI). `src/node/node.ts` implements
 * it; `src/node/control.ts` serves it over a unix socket in the data dir.
 */
import type { MemberCounters } from '../kv/fanout.ts'
import type { PeerReport } from '../net/peers.ts'
import type { PeerSyncStatus } from './syncer.ts'
import type { ConflictReport } from './volume-sync.ts'

export type { ConflictReport, PeerSyncStatus }

/** Sync with paired devices (issue 4). */
export interface SyncReport {
  /** This node's change-log head. */
  head: number
  /** Records waiting here: held for files open for writing, or not placeable yet. */
  waiting: number
  conflicts: number
  /** One row per paired peer: connected, and how many changes each side is behind. */
  peers: PeerSyncStatus[]
}

export interface StatusReport {
  home: string
  volume: string
  mount: string
  pid: number
  peerId: string
  /** Content objects in the local store (chunks and manifest nodes). */
  chunks: number
  /** Bytes the local store holds (sealed, as on disk). */
  storedBytes: number
  /** Sum of the sizes of all files in the volume (before dedup and sealing). */
  logicalBytes: number
  files: number
  directories: number
  startedAt: string
  /** Objects waiting to be copied to each of the volume's other stores. */
  /** Per store: objects still to copy, and objects moved to other stores since the daemon started because this one kept failing. */
  replication: Array<{ store: string, pending: number, rerouted?: number, lastError?: string }>
  /** The replication policy: how many stores (the local one counts) should hold each object. */
  copies?: number | 'all'
  /** Objects that a store the policy picked for them still lacks. */
  underReplicated?: number
  /** Paired and nearby devices (empty when the node runs offline). */
  peers: PeerInfo[]
  /** Where this node listens (multiaddrs ending in its peer id). */
  listen: string[]
  sync?: SyncReport
}

/** A row of `bazil peers` (src/net/peers.ts). */
export type PeerInfo = PeerReport

export interface StoreInfo {
  name: string
  url: string
  /** Circuit breaker: closed (healthy), open (failing, skipped), half-open (being probed). */
  state: string
  latencyMs?: number
  bytesPerMs?: number
  pending: number
  /** What the store holds (sealed objects and bytes), when it can tell within STORE_STAT_TIMEOUT_MS. */
  objects?: number
  bytes?: number
  lastError?: string
  /** Since the daemon started: gets sent, staggered, won, cancelled, corrupt copies, repairs. */
  counters?: StoreCounters
}

/** `bazil store policy`: the setting and how far the volume is from meeting it. */
export interface PolicyReport {
  copies: number | 'all'
  /** Stores in the volume, the local one included. */
  stores: number
  underReplicated: number
}

/** What the fan-out counted for one store (requests, staggered, wins, cancelled, corrupt, repaired). */
export type StoreCounters = MemberCounters

/** Progress of a long operation, sent as it goes (the CLI draws a progress bar from it). */
export interface TransferProgress {
  objects: number
  /** Objects known so far (grows while manifests are walked). */
  total: number
  missing: number
  bytes: number
}

export interface TransferReport {
  files: number
  objects: number
  missing: number
  bytes: number
  dryRun: boolean
  /**
   * Dry run of `get`: of the missing objects, how many each other store (or peer) holds, and
   * their bytes (an object held by several stores counts for each).
   */
  sources?: Array<{ store: string, objects: number, bytes: number }>
  /** Dry run of `get`: missing objects that no store or reachable peer holds. */
  unavailable?: number
}

export interface CheckProblem {
  /** Hex chunk id. */
  chunk: string
  problem: 'missing' | 'corrupt'
  /** Volume paths (from the root, e.g. "/a/b.txt") whose content includes the chunk. */
  paths: string[]
}

export interface CheckReport {
  files: number
  chunksChecked: number
  bytesChecked: number
  problems: CheckProblem[]
  ok: boolean
}

export interface TransferOptions {
  dryRun?: boolean
  signal?: AbortSignal
  onProgress?: (progress: TransferProgress) => void
}

export interface NodeApi {
  status: () => Promise<StatusReport>
  check: (options?: { signal?: AbortSignal }) => Promise<CheckReport>
  /** Unmounts cleanly and stops the node; resolves when done. */
  stop: () => Promise<void>
  storeAdd: (name: string, url: string) => Promise<StoreInfo[]>
  storeList: () => Promise<StoreInfo[]>
  storeRemove: (name: string) => Promise<StoreInfo[]>
  /**
   * Shows the replication policy, or sets it from `copies=N` / `copies=all` (and queues what is
   * stored for the stores it now picks).
   */
  storePolicy?: (setting?: string) => Promise<PolicyReport>
  /** Fetches the content of a file or subtree (a volume path) into the local store. */
  get: (path: string, options?: TransferOptions) => Promise<TransferReport>
  /** Copies the content of a file or subtree to the named store. */
  push: (path: string, store: string, options?: TransferOptions) => Promise<TransferReport>
  peers: () => Promise<PeerInfo[]>
  /** A one-time pairing code (peer id, addresses, secret) valid for ttlMs. */
  invite: (ttlMs?: number) => Promise<{ code: string, expiresAt: number }>
  /** Forgets a paired peer; NOT_FOUND if it was not paired. */
  peersRemove: (peerId: string) => Promise<PeerInfo[]>
  /** Renames a paired peer (its name is the hostname at pairing time until then). */
  peersRename?: (peerId: string, name: string) => Promise<PeerInfo[]>
  /** Sync state per paired peer; with `wait`, first waits until every connected peer is caught up (TIMEOUT). */
  syncStatus?: (wait?: { timeoutMs: number }) => Promise<SyncReport>
  /** Conflict copies and entries shown under another name, with their paths. */
  conflicts?: () => Promise<ConflictReport[]>
}
