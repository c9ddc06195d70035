/**
 * The trust guard: every Bazil protocol (`/bazil/...`) refuses streams from peers the trust
 * store does not list as paired, except the few a node opens to strangers on purpose (the
 * pairing protocol). A refused stream is reset at once, before any byte of ours is written,
 * and the refusal is logged; the remote learns nothing but that the stream was reset.
 *
 * The node applies the guard to every handler a service registers through its components
 * (`guardComponents`) and to handlers registered with `NetNode.handle`, so a protocol cannot
 * forget it; services may check again themselves (block exchange does, so it is safe even
 * on a bare libp2p node).
 */
import type { Connection, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import { BazilError, ErrorCode } from '../errors.ts'
import type { Logger } from '../util/log.ts'
import type { TrustStore } from './types.ts'

export const BAZIL_PROTOCOL_PREFIX = '/bazil/'

export interface GuardPolicy {
  trust: TrustStore
  /** Bazil protocols unpaired peers may open (the pairing protocol). */
  openProtocols: ReadonlySet<string>
  log: Logger
}

/** Whether `protocol` is one the guard must check. */
export function isGuarded (policy: GuardPolicy, protocol: string): boolean {
  return protocol.startsWith(BAZIL_PROTOCOL_PREFIX) && !policy.openProtocols.has(protocol)
}

/**
 * Resets `stream` and returns false if its peer is not paired; true otherwise. For services
 * that check for themselves.
 */
export function admitPaired (trust: TrustStore, stream: Stream, connection: Connection, log: Logger): boolean {
  const peerId = connection.remotePeer.toString()
  if (trust.isPaired(peerId)) return true
  log('refused a %s stream from unpaired peer %s (%s)', stream.protocol, peerId, connection.remoteAddr.toString())
  stream.abort(new BazilError(ErrorCode.PERMISSION, `peer ${peerId} is not paired`))
  return false
}

/** `handler`, preceded by the trust check when `protocol` is guarded. */
export function guardHandler (policy: GuardPolicy, protocol: string, handler: StreamHandler): StreamHandler {
  if (!isGuarded(policy, protocol)) return handler
  return async (stream, connection) => {
    if (!admitPaired(policy.trust, stream, connection, policy.log)) return
    await handler(stream, connection)
  }
}

interface HandlerRegistrar {
  handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
}

/**
 * libp2p components as a service sees them, with a registrar whose `handle` guards Bazil
 * protocols. Everything else is the node's own components.
 */
export function guardComponents<C extends object> (components: C, policy: GuardPolicy): C {
  let registrar: HandlerRegistrar | undefined
  return new Proxy(components, {
    get (target, prop) {
      const value: unknown = (target as Record<string | symbol, unknown>)[prop]
      if (prop !== 'registrar') return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
      registrar ??= guardRegistrar(value as HandlerRegistrar, policy)
      return registrar
    }
  })
}

function guardRegistrar<R extends HandlerRegistrar> (registrar: R, policy: GuardPolicy): R {
  return new Proxy(registrar, {
    get (target, prop) {
      if (prop === 'handle') {
        return async (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => {
          await target.handle(protocol, guardHandler(policy, protocol, handler), options)
        }
      }
      const value: unknown = (target as Record<string | symbol, unknown>)[prop]
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    }
  })
}
