/**
 * Protocol id, bounds and deadlines of /bazil/changes/1.0.0. Every inbound limit is here; a
 * change to the wire format is a new protocol id, not a new constant.
 */

export const PROTOCOL = '/bazil/changes/1.0.0'

/** Volume ids are 16 random bytes (home.ts); room for other lengths, bounded. */
export const MAX_VOLUME_ID_BYTES = 64
/** Records a PULL may ask for; the server may send fewer (MAX_REPLY_BYTES). */
export const MAX_RECORDS_PER_PULL = 1024
/**
 * Largest record body: an entry state with its clock, names and xattrs (each xattr value is at
 * most 64 KiB; a state that does not fit is refused by the sync layer when it is made).
 */
export const MAX_RECORD_BYTES = 1024 * 1024
/** Largest Reply frame. The server stops adding records before it (but always sends one). */
export const MAX_REPLY_BYTES = 4 * MAX_RECORD_BYTES + 4096
/** Largest Request frame. */
export const MAX_REQUEST_BYTES = MAX_VOLUME_ID_BYTES + 64

/** Server: how long a client has to send its request once the stream is open. */
export const REQUEST_TIMEOUT_MS = 10_000
/** Both sides: the whole exchange on one stream, request to the end of the reply. */
export const EXCHANGE_DEADLINE_MS = 60_000
/** Server: concurrent inbound change streams per connection (libp2p refuses more). */
export const MAX_INBOUND_STREAMS = 8
