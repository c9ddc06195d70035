/**
 * Protocol id, bounds and deadlines of /bazil/block/1.0.0. Every inbound limit the server
 * enforces is here; a change to the wire format is a new protocol id, not a new constant.
 */

export const PROTOCOL = '/bazil/block/1.0.0'

/** Ids per request. The client splits larger wants into several requests (streams). */
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

/** Server: how long a client has to send its request once the stream is open. */
export const REQUEST_TIMEOUT_MS = 10_000
/**
 * Server: the whole exchange on one inbound stream, request to last answer. A full batch of
 * the largest blocks (128 × 4 MiB) then needs ≥ 4.4 MB/s; real batches of ≤ 1 MiB chunks need
 * a quarter of that.
 */
export const STREAM_DEADLINE_MS = 120_000
/** Both sides: longest wait for the other to make progress (read a frame, take a write). */
export const STALL_TIMEOUT_MS = 20_000
/** Server: concurrent inbound block streams per connection (libp2p refuses more). */
export const MAX_INBOUND_STREAMS = 16
/** Server: blocks read from the store ahead of the one being sent. */
export const READ_AHEAD = 4
