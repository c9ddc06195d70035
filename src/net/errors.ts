/**
 * libp2p failures as BazilErrors. Networking code calls `netError` at its edge so callers see
 * only Bazil codes: the caller's abort is ABORTED, a deadline of ours is TIMEOUT, and every
 * other failure of reaching or keeping a peer (dial errors, resets, closed connections,
 * unsupported protocol) UNAVAILABLE. BazilErrors (PROTOCOL from a decoder, say) pass through.
 */
import { BazilError, ErrorCode } from '../errors.ts'

export interface NetErrorContext {
  /** The caller's signal: if it fired, the failure is ABORTED whatever libp2p said. */
  signal?: AbortSignal
  /** Whether our own deadline passed (see deadline.ts): then TIMEOUT, unless the caller aborted. */
  timedOut?: boolean
}

export function netError (err: unknown, what: string, context: NetErrorContext = {}): BazilError {
  if (context.signal?.aborted === true) {
    if (err instanceof BazilError && err.code === ErrorCode.ABORTED) return err
    return new BazilError(ErrorCode.ABORTED, `${what}: aborted`, { cause: context.signal.reason ?? err })
  }
  if (context.timedOut === true) {
    return new BazilError(ErrorCode.TIMEOUT, `${what}: timed out`, { cause: err })
  }
  if (err instanceof BazilError) return err
  const name = (err as Error | undefined)?.name ?? 'Error'
  const message = (err as Error | undefined)?.message ?? String(err)
  return new BazilError(ErrorCode.UNAVAILABLE, `${what}: ${name}: ${message}`, { cause: err })
}
