/**
 * The wire format of /bazil/changes/1.0.0 (schema in changes.proto, codec generated into
 * changes.ts): frames as they go on the stream, and the checks every decoded message passes
 * before anyone acts on it. Any violation is a BazilError PROTOCOL (INVALID for our own
 * arguments). Sequence numbers are safe integers here, bigints only on the wire.
 */
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { encodeVarint } from '../../src/net/frames.ts'
import { Reply, Request } from './changes.ts'
import { MAX_RECORD_BYTES, MAX_RECORDS_PER_PULL, MAX_VOLUME_ID_BYTES } from './constants.ts'

export { Reply, Request }

export interface ChangeRecord {
  seq: number
  body: Uint8Array
}

export interface PullRequest { kind: 'pull', volume: Uint8Array, since: number, limit: number }
export interface HeadRequest { kind: 'head', volume: Uint8Array, head: number }
export type ChangesRequest = PullRequest | HeadRequest

export interface ChangesReply {
  status: Reply.Status
  head: number
  records: ChangeRecord[]
}

function frame (body: Uint8Array): Uint8Array {
  return Buffer.concat([encodeVarint(body.byteLength), body])
}

export function encodeRequestFrame (request: ChangesRequest): Uint8Array {
  checkRequest(request, ErrorCode.INVALID)
  return frame(Request.encode({
    kind: request.kind === 'pull' ? Request.Kind.PULL : Request.Kind.HEAD,
    volume: request.volume as Uint8Array<ArrayBuffer>,
    since: BigInt(request.kind === 'pull' ? request.since : 0),
    limit: request.kind === 'pull' ? request.limit : 0,
    head: BigInt(request.kind === 'head' ? request.head : 0)
  }))
}

export function decodeRequest (bytes: Uint8Array): ChangesRequest {
  let raw: Request
  try {
    raw = Request.decode(bytes)
  } catch (err) {
    throw new BazilError(ErrorCode.PROTOCOL, `bad changes request: ${(err as Error).message}`, { cause: err })
  }
  const request: ChangesRequest = raw.kind === Request.Kind.PULL
    ? { kind: 'pull', volume: raw.volume, since: toSeq(raw.since, 'since'), limit: raw.limit }
    : raw.kind === Request.Kind.HEAD
      ? { kind: 'head', volume: raw.volume, head: toSeq(raw.head, 'head') }
      : fail(`unknown request kind ${String(raw.kind)}`)
  checkRequest(request, ErrorCode.PROTOCOL)
  return request
}

export function encodeReplyFrame (reply: ChangesReply): Uint8Array {
  return frame(Reply.encode({
    status: reply.status,
    head: BigInt(reply.head),
    records: reply.records.map(r => ({ seq: BigInt(r.seq), body: r.body as Uint8Array<ArrayBuffer> }))
  }))
}

/** Checks a reply to `request`: records in order, after `since`, at most `limit`, none past head. */
export function decodeReply (bytes: Uint8Array, request: ChangesRequest): ChangesReply {
  let raw: Reply
  try {
    raw = Reply.decode(bytes, { limits: { records: MAX_RECORDS_PER_PULL } })
  } catch (err) {
    throw new BazilError(ErrorCode.PROTOCOL, `bad changes reply: ${(err as Error).message}`, { cause: err })
  }
  if (![Reply.Status.OK, Reply.Status.WRONG_VOLUME, Reply.Status.ERROR].includes(raw.status)) fail(`unknown reply status ${String(raw.status)}`)
  const head = toSeq(raw.head, 'head')
  const records = raw.records.map(r => ({ seq: toSeq(r.seq, 'seq'), body: r.body }))
  if (raw.status !== Reply.Status.OK && records.length > 0) fail(`a ${raw.status} reply carries records`)
  if (request.kind === 'head' && records.length > 0) fail('a reply to HEAD carries records')
  if (request.kind === 'pull' && records.length > request.limit) fail(`${records.length} records for a limit of ${request.limit}`)
  let previous = request.kind === 'pull' ? request.since : 0
  for (const record of records) {
    if (record.seq <= previous) fail(`record ${record.seq} after ${previous}: records must increase past since`)
    if (record.seq > head) fail(`record ${record.seq} past the head ${head}`)
    if (record.body.byteLength === 0 || record.body.byteLength > MAX_RECORD_BYTES) fail(`a record of ${record.body.byteLength} bytes`)
    previous = record.seq
  }
  return { status: raw.status, head, records }
}

function checkRequest (request: ChangesRequest, code: ErrorCode): void {
  if (request.volume.byteLength === 0 || request.volume.byteLength > MAX_VOLUME_ID_BYTES) {
    throw new BazilError(code, `a volume id of ${request.volume.byteLength} bytes`)
  }
  if (request.kind === 'pull' && (request.limit < 1 || request.limit > MAX_RECORDS_PER_PULL)) {
    throw new BazilError(code, `a pull of ${request.limit} records (1 to ${MAX_RECORDS_PER_PULL})`)
  }
  const seq = request.kind === 'pull' ? request.since : request.head
  if (!Number.isSafeInteger(seq) || seq < 0) throw new BazilError(code, `bad sequence number ${seq}`)
}

function toSeq (value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${value} is out of range`)
  return Number(value)
}

function fail (message: string): never {
  throw new BazilError(ErrorCode.PROTOCOL, message)
}
