/**
 * Protocol id, bounds and deadlines of /bazil/block/1.0.0. Every inbound limit the server
 * enforces is here; a change to the wire format is a new protocol id, not a new constant.
 */

export const PROTOCOL = '/bazil/block/1.0.0'

/** Ids per request. The client splits larger wants into several requests on one stream. */
export const MAX_IDS_PER_REQUEST = 128
/** Id length bounds: the KV key range (chunk ids are 32 bytes). */
export const MIN_ID_BYTES = 2
export const MAX_ID_BYTES = 127
/**
 * Largest block carried: a sealed chunk (≤ 1 MiB + 17) or manifest node (≈ 40 KiB) with room
 * to spare; the KV contract also round-trips 4 MiB values.
 */
export const MAX_BLOCK_BYTES = 4 * 1024 * 1024 + 4096
/** Largest Request frame: every id at its longest plus protobuf tags and lengths. */
export const MAX_REQUEST_BYTES = MAX_IDS_PER_REQUEST * (MAX_ID_BYTES + 2) + 16
/** Largest Response frame: a block, its id and the protobuf tags and lengths. */
export const MAX_RESPONSE_BYTES = MAX_BLOCK_BYTES + MAX_ID_BYTES + 32

/**
 * Server: how long it waits for a request — from the stream's opening, then from the last
 * answer of the previous one — before resetting the stream. A client with nothing more to ask
 * closes its side instead.
 */
export const REQUEST_TIMEOUT_MS = 10_000
/**
 * Server: one request, from its arrival to its last answer. A full request of the largest
 * blocks (128 × 4 MiB) then needs ≥ 0.9 MB/s; one of 1 MiB chunks a quarter of that. Slower
 * links get TIMEOUTs, never unbounded server work.
 */
export const REQUEST_DEADLINE_MS = 600_000
/**
 * Both sides: longest wait without progress — no byte received, no byte taken by the other
 * side's window, or (server) no block read from the store.
 */
export const STALL_TIMEOUT_MS = 20_000
/** Client: send the next request when the current one has this many answers to go. */
export const PREFETCH_WHEN_LEFT = 16
/** Server: concurrent inbound block streams per connection (libp2p refuses more). */
export const MAX_INBOUND_STREAMS = 16
/** Server: blocks read from the store ahead of the one being sent. */
export const READ_AHEAD = 4
