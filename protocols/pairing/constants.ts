/**
 * Constants of pairing, `/bazil/pair/1.0.0`: the protocol id, the bounds every inbound stream is
 * held to (deadline, frame size, concurrent streams), the sizes of the proof's ingredients, and
 * the context strings that separate its MACs and keys. Changing a wire value means a new id.
 */

export const PAIRING_PROTOCOL = '/bazil/pair/1.0.0'

/** Domain separation for everything derived from an invite secret (see crypto.ts). */
export const PAIRING_CONTEXT = 'bazil/pair/v1'
export const SEAL_INFO = 'bazil/pair/v1 seal'

export const NONCE_BYTES = 32
export const INVITE_ID_BYTES = 16
export const INVITE_SECRET_BYTES = 32
export const MAC_BYTES = 32
export const OWNER_SECRET_BYTES = 32
export const SEAL_IV_BYTES = 12
export const SEAL_TAG_BYTES = 16

/** Hostnames and volume names on the wire (UTF-8 bytes); longer ones are cut by the sender. */
export const MAX_NAME_BYTES = 255
/** Largest frame either side reads: a Result holds 32 + 2 × 255 + ids and framing, sealed. */
export const MAX_MESSAGE_BYTES = 2048
/** Unread bytes a stream may hold: a peer flooding frames is cut off here. */
export const MAX_BUFFERED_BYTES = 4 * MAX_MESSAGE_BYTES

/** The inviter's deadline for a whole inbound exchange, from stream open to the last frame. */
export const INBOUND_DEADLINE_MS = 15_000
/** The joiner's default deadline for dial plus exchange (the caller's signal can end it sooner). */
export const JOIN_DEADLINE_MS = 30_000
/** Pairing is rare and interactive: a few concurrent attempts are plenty, more are an attack. */
export const MAX_INBOUND_STREAMS = 4
export const MAX_OUTBOUND_STREAMS = 2

/** Wrong proofs that burn an invite (a 256-bit secret is not guessed; this stops pestering). */
export const MAX_FAILED_ATTEMPTS = 5
