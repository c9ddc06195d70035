import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface Request {
  kind: Request.Kind
  volume: Uint8Array<ArrayBuffer>
  since: bigint
  limit: number
  head: bigint
}

export namespace Request {
  export enum Kind {
    PULL = 'PULL',
    HEAD = 'HEAD'
  }

  enum __KindValues {
    PULL = 0,
    HEAD = 1
  }

  export namespace Kind {
    export const codec = (): Codec<Kind> => {
      return enumeration<Kind>(__KindValues)
    }
  }

  let _codec: Codec<Request>

  export const codec = (): Codec<Request> => {
    if (_codec == null) {
      _codec = message<Request>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.kind != null && __KindValues[obj.kind] !== 0) {
          w.uint32(8)
          Request.Kind.codec().encode(obj.kind, w)
        }

        if ((obj.volume != null && obj.volume.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.volume)
        }

        if ((obj.since != null && obj.since !== 0n)) {
          w.uint32(24)
          w.uint64(obj.since)
        }

        if ((obj.limit != null && obj.limit !== 0)) {
          w.uint32(32)
          w.uint32(obj.limit)
        }

        if ((obj.head != null && obj.head !== 0n)) {
          w.uint32(40)
          w.uint64(obj.head)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          kind: Kind.PULL,
          volume: uint8ArrayAlloc(0),
          since: 0n,
          limit: 0,
          head: 0n
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.kind = Request.Kind.codec().decode(reader)
              break
            }
            case 2: {
              obj.volume = reader.bytes()
              break
            }
            case 3: {
              obj.since = reader.uint64()
              break
            }
            case 4: {
              obj.limit = reader.uint32()
              break
            }
            case 5: {
              obj.head = reader.uint64()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.kind`,
                value: Request.Kind.codec().decode(reader)
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.volume`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.since`,
                value: reader.uint64()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.limit`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.head`,
                value: reader.uint64()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface RequestKindFieldEvent {
    field: '$.kind'
    value: Request.Kind
  }

  export interface RequestVolumeFieldEvent {
    field: '$.volume'
    value: Uint8Array<ArrayBuffer>
  }

  export interface RequestSinceFieldEvent {
    field: '$.since'
    value: bigint
  }

  export interface RequestLimitFieldEvent {
    field: '$.limit'
    value: number
  }

  export interface RequestHeadFieldEvent {
    field: '$.head'
    value: bigint
  }

  export function encode (obj: Partial<Request>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Request.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Request>): Request {
    return decodeMessage(buf, Request.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Request>): Generator<RequestKindFieldEvent | RequestVolumeFieldEvent | RequestSinceFieldEvent | RequestLimitFieldEvent | RequestHeadFieldEvent> {
    return streamMessage(buf, Request.codec(), opts)
  }
}

export interface Record {
  seq: bigint
  body: Uint8Array<ArrayBuffer>
}

export namespace Record {
  let _codec: Codec<Record>

  export const codec = (): Codec<Record> => {
    if (_codec == null) {
      _codec = message<Record>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.seq != null && obj.seq !== 0n)) {
          w.uint32(8)
          w.uint64(obj.seq)
        }

        if ((obj.body != null && obj.body.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.body)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          seq: 0n,
          body: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.seq = reader.uint64()
              break
            }
            case 2: {
              obj.body = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.body`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface RecordSeqFieldEvent {
    field: '$.seq'
    value: bigint
  }

  export interface RecordBodyFieldEvent {
    field: '$.body'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Record>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Record.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Record>): Record {
    return decodeMessage(buf, Record.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Record>): Generator<RecordSeqFieldEvent | RecordBodyFieldEvent> {
    return streamMessage(buf, Record.codec(), opts)
  }
}

export interface Reply {
  status: Reply.Status
  head: bigint
  records: Record[]
}

export namespace Reply {
  export enum Status {
    OK = 'OK',
    WRONG_VOLUME = 'WRONG_VOLUME',
    ERROR = 'ERROR'
  }

  enum __StatusValues {
    OK = 0,
    WRONG_VOLUME = 1,
    ERROR = 2
  }

  export namespace Status {
    export const codec = (): Codec<Status> => {
      return enumeration<Status>(__StatusValues)
    }
  }

  let _codec: Codec<Reply>

  export const codec = (): Codec<Reply> => {
    if (_codec == null) {
      _codec = message<Reply>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.status != null && __StatusValues[obj.status] !== 0) {
          w.uint32(8)
          Reply.Status.codec().encode(obj.status, w)
        }

        if ((obj.head != null && obj.head !== 0n)) {
          w.uint32(16)
          w.uint64(obj.head)
        }

        if (obj.records != null && obj.records.length > 0) {
          for (const value of obj.records) {
            w.uint32(26)
            Record.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          status: Status.OK,
          head: 0n,
          records: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.status = Reply.Status.codec().decode(reader)
              break
            }
            case 2: {
              obj.head = reader.uint64()
              break
            }
            case 3: {
              if (opts.limits?.records != null && obj.records.length === opts.limits.records) {
                throw new MaxLengthError('Decode error - repeated field "records" had too many elements')
              }

              obj.records.push(Record.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.records$
              }))
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          records: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.status`,
                value: Reply.Status.codec().decode(reader)
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.head`,
                value: reader.uint64()
              }
              break
            }
            case 3: {
              if (opts.limits?.records != null && obj.records === opts.limits.records) {
                throw new MaxLengthError('Streaming decode error - repeated field "records" had too many elements')
              }

              for (const evt of Record.codec().stream(reader, reader.uint32(), `${prefix}.records[]`, {
                limits: opts.limits?.records$
              })) {
                yield {
                  ...evt,
                  index: obj.records
                }
              }

              obj.records++

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface ReplyStatusFieldEvent {
    field: '$.status'
    value: Reply.Status
  }

  export interface ReplyHeadFieldEvent {
    field: '$.head'
    value: bigint
  }

  export interface ReplyRecordsSeqFieldEvent {
    field: '$.records[].seq'
    value: bigint
    index: number
  }

  export interface ReplyRecordsBodyFieldEvent {
    field: '$.records[].body'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export function encode (obj: Partial<Reply>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Reply.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Reply>): Reply {
    return decodeMessage(buf, Reply.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Reply>): Generator<ReplyStatusFieldEvent | ReplyHeadFieldEvent | ReplyRecordsSeqFieldEvent | ReplyRecordsBodyFieldEvent> {
    return streamMessage(buf, Reply.codec(), opts)
  }
}
