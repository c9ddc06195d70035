/**
 * The wire format of /bazil/block/1.0.0 (schema in block-exchange.proto, codec generated into
 * block-exchange.ts): frames as they go on the stream, and the checks every decoded message
 * passes before anyone acts on it. Any violation is a BazilError PROTOCOL.
 *
 * A Response frame is built around the block rather than by copying it into one buffer: the
 * head (length prefix, id, status, the data field's tag and length) is encoded and the block
 * follows as a second part. The bytes are exactly what the generated encoder produces (the
 * golden test checks it).
 */
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { encodeVarint } from '../../src/net/frames.ts'
import { Request, Response } from './block-exchange.ts'
import { MAX_BLOCK_BYTES, MAX_ID_BYTES, MAX_IDS_PER_REQUEST, MIN_ID_BYTES } from './constants.ts'

export { Request, Response }

/** Tag of Response field 3 (data), wire type 2 (length-delimited). */
const DATA_TAG = (3 << 3) | 2

export function encodeRequestFrame (kind: Request.Kind, ids: Uint8Array[]): Uint8Array {
  checkIds(ids, ErrorCode.INVALID)
  const body = Request.encode({ kind, ids: ids as Array<Uint8Array<ArrayBuffer>> })
  return Buffer.concat([encodeVarint(body.byteLength), body])
}

/** A Response frame as parts to send in order; `data` is not copied. */
export function encodeResponseFrame (id: Uint8Array, status: Response.Status, data?: Uint8Array): Uint8Array[] {
  const head = Response.encode({ id: id as Uint8Array<ArrayBuffer>, status })
  if (data === undefined || data.byteLength === 0) {
    return [Buffer.concat([encodeVarint(head.byteLength), head])]
  }
  const dataLength = encodeVarint(data.byteLength)
  const total = head.byteLength + 1 + dataLength.byteLength + data.byteLength
  return [Buffer.concat([encodeVarint(total), head, Uint8Array.of(DATA_TAG), dataLength]), data]
}

export function decodeRequest (frame: Uint8Array): Request {
  let request: Request
  try {
    request = Request.decode(frame, { limits: { ids: MAX_IDS_PER_REQUEST } })
  } catch (err) {
    throw new BazilError(ErrorCode.PROTOCOL, `bad block request: ${(err as Error).message}`, { cause: err })
  }
  checkIds(request.ids, ErrorCode.PROTOCOL)
  return request
}

export function decodeResponse (frame: Uint8Array): Response {
  let response: Response
  try {
    response = Response.decode(frame)
  } catch (err) {
    throw new BazilError(ErrorCode.PROTOCOL, `bad block response: ${(err as Error).message}`, { cause: err })
  }
  if (response.data.byteLength > MAX_BLOCK_BYTES) {
    throw new BazilError(ErrorCode.PROTOCOL, `block of ${response.data.byteLength} bytes exceeds ${MAX_BLOCK_BYTES}`)
  }
  if (response.status !== Response.Status.OK && response.data.byteLength > 0) {
    throw new BazilError(ErrorCode.PROTOCOL, `a ${response.status} answer carries data`)
  }
  return response
}

/** Ids of a request: 1 to MAX_IDS_PER_REQUEST of them, each MIN_ID_BYTES to MAX_ID_BYTES long. */
function checkIds (ids: Uint8Array[], code: ErrorCode): void {
  if (ids.length === 0 || ids.length > MAX_IDS_PER_REQUEST) {
    throw new BazilError(code, `a block request holds 1 to ${MAX_IDS_PER_REQUEST} ids, not ${ids.length}`)
  }
  for (const id of ids) {
    if (id.byteLength < MIN_ID_BYTES || id.byteLength > MAX_ID_BYTES) {
      throw new BazilError(code, `block id of ${id.byteLength} bytes (want ${MIN_ID_BYTES}–${MAX_ID_BYTES})`)
    }
  }
}
