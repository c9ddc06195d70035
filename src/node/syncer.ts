/**
 * Keeps the volume in sync with every connected paired peer, continuously and both ways, over
 * /bazil/changes/1.0.0: on connecting, on a peer's head announcement and after local changes
 * (debounced), each side tells the other its head and pulls what it lacks, page by page; a
 * periodic round repeats that, so a missed announcement costs at most SYNC_ROUND_MS. Pulls
 * from one peer run one at a time; a failed pull is retried on the next trigger.
 *
 * It also keeps what `bazil status` / `bazil sync` show per peer: how far each side is behind,
 * and answers `sync --wait` (every connected peer caught up, both ways).
 */
import { BazilError, ErrorCode, throwIfAborted } from '../errors.ts'
import type { ChangeLog } from '../../protocols/changes/index.ts'
import { logger } from '../util/log.ts'
import type { VolumeSync } from './volume-sync.ts'
import type { EntryRecord } from '../sync/record.ts'

const log = logger('bazil:syncer')

/** Local changes within this window go out in one announcement. */
export const ANNOUNCE_DEBOUNCE_MS = 30
/**
 * While local changes keep coming (a copy of many files), announcements go out at most this
 * often: each one makes every peer pull (two streams and an applied batch), and at one per
 * debounce window those pulls cost the writer more than the records themselves.
 */
export const ANNOUNCE_BURST_MS = 250
/** Every connected paired peer is asked for its head this often, whatever else happens. */
export const SYNC_ROUND_MS = 10_000
/** While records are held (files open for writing), they are retried this often. */
export const HELD_RETRY_MS = 1000

export interface PeerSyncStatus {
  peerId: string
  connected: boolean
  /** Records of the peer's log this node has not applied yet (its head minus our cursor: an upper bound). */
  behind: number
  /** Records of this node's log the peer has not pulled yet. */
  peerBehind: number
  /** The peer's head as last heard, and how far we applied it. */
  peerHead: number
  cursor: number
  lastSyncAt?: string
  lastError?: string
}

export interface SyncerDeps {
  sync: VolumeSync
  changes: ChangeLog
  /** Paired peers connected now. */
  connectedPeers: () => string[]
  /** Paired peers, connected or not. */
  pairedPeers: () => string[]
  /** Records of a page just applied (the prefetch of small files' content listens). */
  onApplied?: (records: EntryRecord[]) => void
}

interface PeerState {
  head: number
  /** How far the peer has pulled our log. */
  served: number
  pulling: Promise<void> | undefined
  again: boolean
  lastSyncAt?: string
  lastError?: string
}

export class Syncer {
  readonly #deps: SyncerDeps
  readonly #peers = new Map<string, PeerState>()
  #announceTimer: NodeJS.Timeout | undefined
  #lastAnnounceAt = 0
  #roundTimer: NodeJS.Timeout | undefined
  #heldTimer: NodeJS.Timeout | undefined
  #stopped = false

  constructor (deps: SyncerDeps) {
    this.#deps = deps
    deps.sync.onLocalChange(() => { this.#scheduleAnnounce() })
    this.#roundTimer = setInterval(() => { this.round() }, SYNC_ROUND_MS)
    this.#roundTimer.unref()
    this.#heldTimer = setInterval(() => {
      if (deps.sync.engine.waiting() === 0) return
      deps.sync.retryHeld().catch((err: unknown) => { log.error('retrying held records: %s', (err as Error).message) })
    }, HELD_RETRY_MS)
    this.#heldTimer.unref()
  }

  /** A paired peer connected: tell it our head and pull what it has. */
  connected (peer: string): void {
    this.#announceTo(peer)
    this.#pull(peer)
  }

  /** The peer told us its head (or answered with it). */
  heard (peer: string, head: number): void {
    const state = this.#state(peer)
    if (head > state.head) state.head = head
    if (state.head > this.#deps.sync.engine.cursor(peer)) this.#pull(peer)
  }

  /** The peer pulled our log up to `upTo`. */
  served (peer: string, upTo: number): void {
    const state = this.#state(peer)
    if (upTo > state.served) state.served = upTo
  }

  /** Announces our head to every connected peer and pulls from each. */
  round (): void {
    if (this.#stopped) return
    for (const peer of this.#deps.connectedPeers()) {
      this.#announceTo(peer)
      this.#pull(peer)
    }
  }

  status (): PeerSyncStatus[] {
    const connected = new Set(this.#deps.connectedPeers())
    const engine = this.#deps.sync.engine
    return this.#deps.pairedPeers().map(peerId => {
      const state = this.#peers.get(peerId)
      const cursor = engine.cursor(peerId)
      const head = Math.max(state?.head ?? 0, cursor)
      return {
        peerId,
        connected: connected.has(peerId),
        behind: head - cursor,
        peerBehind: engine.countAfter(state?.served ?? 0),
        peerHead: head,
        cursor,
        ...(state?.lastSyncAt !== undefined ? { lastSyncAt: state.lastSyncAt } : {}),
        ...(state?.lastError !== undefined ? { lastError: state.lastError } : {})
      }
    })
  }

  /**
   * Resolves once every connected paired peer is caught up both ways (we applied its head, it
   * pulled ours); TIMEOUT after `timeoutMs`.
   */
  async waitForSync (timeoutMs: number, options: { signal?: AbortSignal } = {}): Promise<PeerSyncStatus[]> {
    const deadline = Date.now() + timeoutMs
    this.round()
    let lastAnnounce = Date.now()
    for (;;) {
      throwIfAborted(options.signal)
      const status = this.status().filter(s => s.connected)
      const idle = status.every(s => this.#peers.get(s.peerId)?.pulling === undefined)
      if (idle && status.every(s => s.behind === 0 && s.peerBehind === 0)) return status
      if (Date.now() > deadline) {
        throw new BazilError(ErrorCode.TIMEOUT, `not in sync after ${timeoutMs} ms: ${status.filter(s => s.behind > 0 || s.peerBehind > 0).map(s => `${s.peerId} (${s.behind} to pull, ${s.peerBehind} to send)`).join(', ')}`)
      }
      // The peer pulls when it hears our head: tell it again now and then.
      if (Date.now() - lastAnnounce > 500) {
        this.round()
        lastAnnounce = Date.now()
      }
      await new Promise(resolve => setTimeout(resolve, 25))
    }
  }

  stop (): void {
    this.#stopped = true
    clearTimeout(this.#announceTimer)
    clearInterval(this.#roundTimer)
    clearInterval(this.#heldTimer)
  }

  #state (peer: string): PeerState {
    let state = this.#peers.get(peer)
    if (state === undefined) {
      state = { head: 0, served: 0, pulling: undefined, again: false }
      this.#peers.set(peer, state)
    }
    return state
  }

  #scheduleAnnounce (): void {
    if (this.#announceTimer !== undefined || this.#stopped) return
    // A change after a quiet spell goes out after the debounce; one during a burst waits for
    // the burst interval since the last announcement.
    const sinceLast = Date.now() - this.#lastAnnounceAt
    const delay = Math.max(ANNOUNCE_DEBOUNCE_MS, ANNOUNCE_BURST_MS - sinceLast)
    this.#announceTimer = setTimeout(() => {
      this.#announceTimer = undefined
      this.#lastAnnounceAt = Date.now()
      for (const peer of this.#deps.connectedPeers()) this.#announceTo(peer)
    }, delay)
  }

  #announceTo (peer: string): void {
    if (this.#stopped) return
    this.#deps.changes.announce(peer, this.#deps.sync.engine.head()).then(
      head => { this.heard(peer, head) },
      (err: unknown) => { this.#failed(peer, 'announce to', err) }
    )
  }

  #pull (peer: string): void {
    if (this.#stopped) return
    const state = this.#state(peer)
    if (state.pulling !== undefined) {
      state.again = true
      return
    }
    state.pulling = this.#pullAll(peer, state).finally(() => {
      state.pulling = undefined
      if (state.again && !this.#stopped) {
        state.again = false
        this.#pull(peer)
      }
    })
  }

  async #pullAll (peer: string, state: PeerState): Promise<void> {
    const { sync, changes } = this.#deps
    try {
      for (;;) {
        const since = sync.engine.cursor(peer)
        const page = await changes.pull(peer, { since })
        if (page.head > state.head) state.head = page.head
        if (page.records.length === 0) {
          // Nothing after our cursor: the rest of its log up to the head was superseded.
          if (page.head > since) await sync.apply(peer, [], page.head)
          break
        }
        const records = page.records.map(r => sync.decode(r.body))
        const last = page.records.at(-1)?.seq as number
        const report = await sync.apply(peer, records, last)
        this.#deps.onApplied?.(records)
        log('applied %d of %d records from %s (%d conflicts, %d waiting)', report.applied, records.length, peer, report.conflicts, report.held)
        // The page reached the head the peer had when it answered: what it logs later, it
        // announces. Asking again at once would make a peer that is busy writing serve one
        // pull after another, each a few records.
        if (last >= page.head) break
      }
      state.lastSyncAt = new Date().toISOString()
      delete state.lastError
    } catch (err) {
      this.#failed(peer, 'pull from', err)
    }
  }

  #failed (peer: string, what: string, err: unknown): void {
    const message = (err as Error).message
    this.#state(peer).lastError = message
    log('%s %s failed: %s', what, peer, message)
  }
}
