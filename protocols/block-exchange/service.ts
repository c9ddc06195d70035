/**
 * The block exchange service (/bazil/block/1.0.0) as a libp2p service factory: it serves
 * sealed blocks from the local store to paired peers (server.ts) and fetches them from
 * paired peers (client.ts). Blocks are opaque here; the CAS verifies them when it opens them.
 *
 *   const node = await createNetNode({ ..., services: { blocks: blockExchange({ store, trust }) } })
 *   for await (const { id, value } of node.services.blocks.fetch(peerId, ids)) ...
 */
import type { Connection, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { KV, KVHas } from '../../src/kv/kv.ts'
import { admitPaired } from '../../src/net/guard.ts'
import type { Traffic } from '../../src/net/traffic.ts'
import type { TrustStore } from '../../src/net/types.ts'
import { logger } from '../../src/util/log.ts'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { exchange, type StreamOpener } from './client.ts'
import { MAX_INBOUND_STREAMS, PROTOCOL, REQUEST_DEADLINE_MS, REQUEST_TIMEOUT_MS, STALL_TIMEOUT_MS } from './constants.ts'
import { serveStream } from './server.ts'
import { Request, Response } from './wire.ts'

const log = logger('bazil:block')

export interface BlockExchangeInit {
  /** Where served blocks come from (the node's local store). */
  store: KV & Partial<KVHas>
  trust: TrustStore
  /** Per-peer byte counters for `bazil peers` (shared with the node). */
  traffic?: Traffic
  /** Overrides of the constants.ts deadlines, for tests. */
  requestTimeoutMs?: number
  requestDeadlineMs?: number
  stallTimeoutMs?: number
}

/** The components the service uses: the smallest slice of libp2p's. */
export interface BlockExchangeComponents {
  registrar: {
    handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
  connectionManager: StreamOpener
}

export interface BlockResult {
  id: Uint8Array
  /** The block's (sealed) bytes, or null if the peer does not hold it. */
  value: Uint8Array | null
}

export interface BlockExchange extends Startable {
  /** Blocks from a paired peer, in the order asked; see client.ts for errors. */
  fetch: (peerId: string, ids: Uint8Array[], options?: { signal?: AbortSignal }) => AsyncIterable<BlockResult>
  /** Whether a paired peer holds each id, in the order asked. */
  has: (peerId: string, ids: Uint8Array[], options?: { signal?: AbortSignal }) => Promise<boolean[]>
}

export function blockExchange (init: BlockExchangeInit): (components: BlockExchangeComponents) => BlockExchange {
  return components => new BlockExchangeService(init, components)
}

class BlockExchangeService implements BlockExchange {
  readonly [Symbol.toStringTag] = '@bazil/block-exchange'
  readonly #init: BlockExchangeInit
  readonly #components: BlockExchangeComponents
  #stop = new AbortController()
  readonly #inbound = new Set<Stream>()

  constructor (init: BlockExchangeInit, components: BlockExchangeComponents) {
    this.#init = init
    this.#components = components
  }

  async start (): Promise<void> {
    this.#stop = new AbortController()
    await this.#components.registrar.handle(PROTOCOL, async (stream, connection) => {
      await this.#serve(stream, connection)
    }, { maxInboundStreams: MAX_INBOUND_STREAMS })
  }

  async stop (): Promise<void> {
    this.#stop.abort(new BazilError(ErrorCode.CLOSED, 'block exchange stopped'))
    for (const stream of this.#inbound) stream.abort(new BazilError(ErrorCode.CLOSED, 'block exchange stopped'))
    await this.#components.registrar.unhandle(PROTOCOL)
  }

  async * fetch (peerId: string, ids: Uint8Array[], options?: { signal?: AbortSignal }): AsyncGenerator<BlockResult> {
    for await (const answer of exchange(this.#clientContext(), peerId, Request.Kind.GET, ids, options)) {
      if (answer.status === Response.Status.ERROR) {
        throw new BazilError(ErrorCode.UNAVAILABLE, `${peerId} holds block ${Buffer.from(answer.id).toString('hex')} but could not read it`)
      }
      yield { id: answer.id, value: answer.status === Response.Status.OK ? answer.data : null }
    }
  }

  async has (peerId: string, ids: Uint8Array[], options?: { signal?: AbortSignal }): Promise<boolean[]> {
    const held: boolean[] = []
    for await (const answer of exchange(this.#clientContext(), peerId, Request.Kind.HAS, ids, options)) {
      if (answer.status === Response.Status.ERROR) {
        throw new BazilError(ErrorCode.UNAVAILABLE, `${peerId} could not check block ${Buffer.from(answer.id).toString('hex')}`)
      }
      held.push(answer.status === Response.Status.OK)
    }
    return held
  }

  async #serve (stream: Stream, connection: Connection): Promise<void> {
    // The node guards /bazil/ protocols already; checking here keeps the service safe alone.
    if (!admitPaired(this.#init.trust, stream, connection, log)) return
    this.#inbound.add(stream)
    try {
      await serveStream(stream, connection, {
        store: this.#init.store,
        traffic: this.#init.traffic,
        log,
        requestTimeoutMs: this.#init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
        requestDeadlineMs: this.#init.requestDeadlineMs ?? REQUEST_DEADLINE_MS,
        stallTimeoutMs: this.#init.stallTimeoutMs ?? STALL_TIMEOUT_MS,
        stopped: this.#stop.signal
      })
    } finally {
      this.#inbound.delete(stream)
    }
  }

  #clientContext (): Parameters<typeof exchange>[0] {
    return {
      connectionManager: this.#components.connectionManager,
      trust: this.#init.trust,
      traffic: this.#init.traffic,
      log,
      stallTimeoutMs: this.#init.stallTimeoutMs ?? STALL_TIMEOUT_MS
    }
  }
}
