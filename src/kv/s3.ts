/**
 * The S3 store: a `KV` over any S3-compatible service (AWS S3, Ceph's RADOS Gateway, MinIO, ...)
 * through @aws-sdk/client-s3, pinned in package.json (its releases from 2027 need Node 22).
 *
 * Layout: the value of key K is the object `<prefix>objects/<lowercase hex of K>`, holding the
 * value's bytes exactly (a sealed chunk) and nothing else. A non-empty prefix always ends in '/',
 * so stores under prefixes 'a' and 'ab' (or 'a/b') in one bucket never see each other's objects.
 *
 * - put is a conditional create (`If-None-Match: *`): an object already there is not rewritten
 *   (412 means success: content addressing makes its value the same). Content-MD5 lets the
 *   server refuse a body damaged in transit. A PUT is atomic, so a reader never sees part of one.
 * - Every request holds one of `concurrency` slots, and from when it is sent (SDK retries and
 *   reading the body included) has a deadline of `timeoutMs`; it honours the caller's signal
 *   while queued and in flight.
 * - Errors: absent → NOT_FOUND; refused credentials or access → PERMISSION; no connection, no
 *   answer by the deadline, 5xx → UNAVAILABLE; caller's abort → ABORTED; after close → CLOSED.
 * - keys() and stat() list the prefix: one LIST request per 1,000 objects on every call (a
 *   million objects: 1,000 sequential requests). Callers that need them often should cache.
 * - open() sends nothing (a daemon must start while its store is offline) unless `createBucket`
 *   is set; `check()` asks the server whether the bucket is there and the credentials work.
 */
import { createHash } from 'node:crypto'
import { Agent as HttpAgent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { Readable } from 'node:stream'
import {
  CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand,
  ListObjectsV2Command, PutObjectCommand, S3Client
} from '@aws-sdk/client-s3'
import type { BucketLocationConstraint, ListObjectsV2CommandOutput } from '@aws-sdk/client-s3'
import { BazilError, ErrorCode, throwIfAborted } from '../errors.ts'
import { logger } from '../util/log.ts'
import type { FullKV, KVOptions, KVPutOptions } from './kv.ts'

const log = logger('bazil:kv:s3')

export interface S3StoreConfig {
  bucket: string
  /** Where the store's objects go in the bucket; '/' is appended if missing. Default ''. */
  prefix?: string
  /** e.g. 'http://127.0.0.1:7480' for a self-hosted service. Default: AWS, by region. */
  endpoint?: string
  /** Default: AWS_REGION, then AWS_DEFAULT_REGION, then 'us-east-1'. */
  region?: string
  /** Default: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) from the env. */
  credentials?: { accessKeyId: string, secretAccessKey: string, sessionToken?: string }
  /** endpoint/bucket/key URLs instead of bucket.endpoint/key. Default: true iff `endpoint` is set. */
  pathStyle?: boolean
  /** Create the bucket in open() if it does not exist. */
  createBucket?: boolean
  /** Deadline of each request, in ms. Default 30,000. */
  timeoutMs?: number
  /** Requests in flight at most. Default 8. */
  concurrency?: number
}

const DEFAULT_TIMEOUT_MS = 30_000
const DEFAULT_CONCURRENCY = 8
// The same key limits as LocalStore, so every store accepts the same keys.
const MIN_KEY_BYTES = 2
const MAX_KEY_BYTES = 127
const MAX_PREFIX_BYTES = 512
/** Attempts of a put that meets a concurrent conditional put of the same key (409). */
const PUT_CONFLICT_ATTEMPTS = 3

export class S3Store implements FullKV {
  readonly bucket: string
  readonly prefix: string
  readonly #objects: string
  readonly #where: string
  readonly #region: string
  readonly #client: S3Client
  readonly #timeoutMs: number
  readonly #slots: Slots
  /** Controllers of the requests in flight, to abort them on close(). */
  readonly #inflight = new Set<AbortController>()
  readonly #pending = new Set<Promise<unknown>>()
  #closed = false

  private constructor (config: ResolvedConfig) {
    this.bucket = config.bucket
    this.prefix = config.prefix
    this.#objects = `${config.prefix}objects/`
    this.#where = `s3://${config.bucket}/${config.prefix} at ${config.endpoint ?? `AWS ${config.region}`}`
    this.#region = config.region
    this.#timeoutMs = config.timeoutMs
    this.#slots = new Slots(config.concurrency)
    // The pinned SDK warns on every start that its later releases need Node 22: the pin is our answer.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
    const agent = { keepAlive: true, maxSockets: config.concurrency }
    const sdkLog = (...args: unknown[]): void => { log('sdk: %O', args) }
    this.#client = new S3Client({
      region: config.region,
      ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
      forcePathStyle: config.pathStyle,
      credentials: config.credentials,
      // The SDK's default checksums make streamed uploads fail (411) or get stored framing and
      // all on some S3-compatible servers; Content-MD5 and our own seal protect the bytes.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent: new HttpAgent(agent),
        httpsAgent: new HttpsAgent(agent),
        logger: { debug: sdkLog, info: sdkLog, warn: sdkLog, error: sdkLog } // its default is console
      }
    })
  }

  static async open (config: S3StoreConfig, options?: KVOptions): Promise<S3Store> {
    const store = new S3Store(resolveConfig(config))
    if (config.createBucket === true) {
      try {
        await store.#createBucket(options)
      } catch (err) {
        await store.close()
        throw err
      }
    }
    log('opened %s', store.#where)
    return store
  }

  /** Resolves if the bucket exists and the credentials may use it; rejects with why not. */
  async check (options?: KVOptions): Promise<void> {
    await this.#request('check the bucket', options, async signal => {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal })
    })
  }

  /** Refuses new calls with CLOSED, aborts the requests in flight (CLOSED), frees the sockets. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#slots.close(() => this.#closedError())
    for (const controller of this.#inflight) controller.abort()
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending])
    this.#client.destroy()
  }

  async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    const name = this.#name(key, options)
    return await this.#request(`get ${name}`, options, async signal => {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: name }), { abortSignal: signal })
      return await readBody(out.Body, out.ContentLength, signal)
    })
  }

  async put (key: Uint8Array, value: Uint8Array, options?: KVPutOptions): Promise<void> {
    const name = this.#name(key, options)
    const md5 = createHash('md5').update(value).digest('base64')
    await this.#request(`put ${name}`, options, async signal => {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.#client.send(new PutObjectCommand({
            Bucket: this.bucket, Key: name, Body: value, ContentLength: value.byteLength, ContentMD5: md5, IfNoneMatch: '*'
          }), { abortSignal: signal })
          return
        } catch (err) {
          const status = httpStatus(err)
          if (status === 412) return // already stored
          // AWS answers 409 to a conditional put racing another of the same key: ask again,
          // and the winner's object is there (412) or the other put failed (we create it).
          if (status !== 409 || attempt >= PUT_CONFLICT_ATTEMPTS) throw err
        }
      }
    })
  }

  async has (key: Uint8Array, options?: KVOptions): Promise<boolean> {
    const name = this.#name(key, options)
    return await this.#request(`has ${name}`, options, async signal => {
      try {
        await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: name }), { abortSignal: signal })
        return true
      } catch (err) {
        if (httpStatus(err) === 404) return false
        throw err
      }
    })
  }

  async delete (key: Uint8Array, options?: KVOptions): Promise<void> {
    const name = this.#name(key, options)
    await this.#request(`delete ${name}`, options, async signal => {
      try {
        await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: name }), { abortSignal: signal })
      } catch (err) {
        if (httpStatus(err) !== 404) throw err // S3 says 204 for an absent key; some say 404
      }
    })
  }

  async * keys (options?: KVOptions): AsyncIterable<Uint8Array> {
    for await (const page of this.#list('list keys', options)) {
      for (const { hex } of page) yield Buffer.from(hex, 'hex')
    }
  }

  /** Lists the whole prefix (one request per 1,000 objects) and sums the sizes. */
  async stat (options?: KVOptions): Promise<{ objects: number, bytes: number }> {
    let objects = 0
    let bytes = 0
    for await (const page of this.#list('stat', options)) {
      for (const { size } of page) { objects++; bytes += size }
    }
    return { objects, bytes }
  }

  /** The store's objects, a page (≤ 1,000) at a time, in key order. */
  async * #list (what: string, options: KVOptions | undefined): AsyncGenerator<Array<{ hex: string, size: number }>> {
    let token: string | undefined
    do {
      const out: ListObjectsV2CommandOutput = await this.#request(what, options, async signal => await this.#client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.#objects, ContinuationToken: token }), { abortSignal: signal }))
      const page: Array<{ hex: string, size: number }> = []
      for (const object of out.Contents ?? []) {
        const hex = object.Key?.slice(this.#objects.length) ?? ''
        if (isObjectHex(hex)) page.push({ hex, size: object.Size ?? 0 })
        else log('%s: ignoring %s, not an object name', this.#where, object.Key)
      }
      yield page
      const next = out.IsTruncated === true ? out.NextContinuationToken : undefined
      if (out.IsTruncated === true && (next === undefined || next === token)) {
        throw new BazilError(ErrorCode.PROTOCOL, `${what} in ${this.#where}: a truncated listing without a new continuation token`)
      }
      token = next
    } while (token !== undefined)
  }

  async #createBucket (options: KVOptions | undefined): Promise<void> {
    await this.#request(`create bucket ${this.bucket}`, options, async signal => {
      // Outside us-east-1, AWS wants the region named (so might a self-hosted service that
      // names its zone group: set `region` to that name, or create the bucket yourself).
      const constraint = this.#region === 'us-east-1' ? {} : { CreateBucketConfiguration: { LocationConstraint: this.#region as BucketLocationConstraint } }
      try {
        await this.#client.send(new CreateBucketCommand({ Bucket: this.bucket, ...constraint }), { abortSignal: signal })
      } catch (err) {
        if (errorName(err) === 'BucketAlreadyOwnedByYou') return
        if (errorName(err) === 'BucketAlreadyExists') {
          throw new BazilError(ErrorCode.PERMISSION, `bucket ${this.bucket} exists and belongs to another account`, { cause: err })
        }
        throw err
      }
    })
  }

  /**
   * Runs one request: waits for a slot (honouring the caller's signal), then runs `send` with a
   * signal that fires on the caller's abort, on close() and at the deadline; maps its errors.
   */
  async #request<T> (what: string, options: KVOptions | undefined, send: (signal: AbortSignal) => Promise<T>): Promise<T> {
    this.#checkOpen(options)
    const caller = options?.signal
    const op = (async () => {
      await this.#slots.acquire(caller)
      const controller = new AbortController()
      const abort = (): void => { controller.abort() }
      let timedOut = false
      const timer = setTimeout(() => { timedOut = true; controller.abort() }, this.#timeoutMs)
      caller?.addEventListener('abort', abort, { once: true })
      this.#inflight.add(controller)
      try {
        this.#checkOpen(options)
        return await send(controller.signal)
      } catch (err) {
        if (err instanceof BazilError) throw err
        if (caller?.aborted === true) throw new BazilError(ErrorCode.ABORTED, `${what}: aborted`, { cause: caller.reason })
        if (this.#closed) throw this.#closedError()
        if (timedOut) {
          throw new BazilError(ErrorCode.UNAVAILABLE, `${what}: no answer from ${this.#where} within ${this.#timeoutMs} ms`, { cause: err })
        }
        throw this.#toKVError(err, what)
      } finally {
        clearTimeout(timer)
        caller?.removeEventListener('abort', abort)
        this.#inflight.delete(controller)
        this.#slots.release()
      }
    })()
    this.#pending.add(op)
    try {
      return await op
    } finally {
      this.#pending.delete(op)
    }
  }

  #toKVError (err: unknown, what: string): BazilError {
    const status = httpStatus(err)
    const name = errorName(err)
    const detail = status === undefined ? (err as NodeJS.ErrnoException)?.code ?? name : `HTTP ${status} ${name}`
    const code = classify(status, name, err)
    let why = (err as Error)?.message
    if (code === ErrorCode.PERMISSION) {
      why = name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || status === 401
        ? 'the server refused the credentials: check the access key id and secret'
        : 'access denied: these credentials may not use this bucket'
    } else if (code === ErrorCode.NOT_FOUND) {
      why = name === 'NoSuchKey' ? 'no such object' : `bucket ${this.bucket} not found`
    } else if (code === ErrorCode.UNAVAILABLE) {
      why = 'the service is unreachable or failing'
    }
    return new BazilError(code, `${what} in ${this.#where}: ${why} (${detail})`, { cause: err })
  }

  #name (key: Uint8Array, options: KVOptions | undefined): string {
    this.#checkOpen(options)
    if (key.byteLength < MIN_KEY_BYTES || key.byteLength > MAX_KEY_BYTES) {
      throw new BazilError(ErrorCode.INVALID, `key of ${key.byteLength} bytes (want ${MIN_KEY_BYTES}–${MAX_KEY_BYTES})`)
    }
    return this.#objects + Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex')
  }

  #checkOpen (options: KVOptions | undefined): void {
    if (this.#closed) throw this.#closedError()
    throwIfAborted(options?.signal)
  }

  #closedError (): BazilError {
    return new BazilError(ErrorCode.CLOSED, `S3 store ${this.#where} is closed`)
  }
}

type ResolvedConfig = Required<Pick<S3StoreConfig, 'bucket' | 'prefix' | 'region' | 'timeoutMs' | 'concurrency' | 'credentials' | 'pathStyle'>> & { endpoint?: string }

function resolveConfig (config: S3StoreConfig): ResolvedConfig {
  const invalid = (why: string): never => { throw new BazilError(ErrorCode.INVALID, `S3 store: ${why}`) }
  if (typeof config.bucket !== 'string' || config.bucket === '') invalid('no bucket given')
  let prefix = config.prefix ?? ''
  if (prefix.startsWith('/')) invalid(`prefix ${JSON.stringify(prefix)} starts with '/'`)
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/'
  if (Buffer.byteLength(prefix) > MAX_PREFIX_BYTES) invalid(`prefix longer than ${MAX_PREFIX_BYTES} bytes`)
  const timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS
  if (!(timeoutMs > 0)) invalid(`timeoutMs ${timeoutMs} is not positive`)
  const concurrency = config.concurrency ?? DEFAULT_CONCURRENCY
  if (!Number.isInteger(concurrency) || concurrency < 1) invalid(`concurrency ${concurrency} is not a positive integer`)
  const env = process.env
  const credentials = config.credentials ?? (env.AWS_ACCESS_KEY_ID !== undefined && env.AWS_SECRET_ACCESS_KEY !== undefined
    ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, ...(env.AWS_SESSION_TOKEN === undefined ? {} : { sessionToken: env.AWS_SESSION_TOKEN }) }
    : invalid('no credentials: pass them or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY'))
  return {
    bucket: config.bucket,
    prefix,
    region: config.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    timeoutMs,
    concurrency,
    credentials,
    pathStyle: config.pathStyle ?? config.endpoint !== undefined,
    ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint })
  }
}

function classify (status: number | undefined, name: string, err: unknown): ErrorCode {
  if (name === 'QuotaExceeded') return ErrorCode.NO_SPACE // RGW: 403 over a user or bucket quota
  if (name === 'EntityTooLarge') return ErrorCode.TOO_BIG
  if (name === 'InvalidBucketName' || name === 'InvalidLocationConstraint') return ErrorCode.INVALID
  if (status === 404) return ErrorCode.NOT_FOUND
  if (status === 401 || status === 403) return ErrorCode.PERMISSION
  if (name === 'SlowDown' || (status !== undefined && status >= 500)) return ErrorCode.UNAVAILABLE
  if (status !== undefined) return ErrorCode.PROTOCOL
  if (name === 'AbortError') return ErrorCode.ABORTED
  // No HTTP answer: refused, reset, unresolvable, timed out — or a bug, which IO keeps apart.
  const code = (err as NodeJS.ErrnoException)?.code
  return typeof code === 'string' || name === 'TimeoutError' ? ErrorCode.UNAVAILABLE : ErrorCode.IO
}

function httpStatus (err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode
}

function errorName (err: unknown): string {
  return (err as Error)?.name ?? 'Error'
}

function isObjectHex (hex: string): boolean {
  return hex.length >= 2 * MIN_KEY_BYTES && hex.length <= 2 * MAX_KEY_BYTES && hex.length % 2 === 0 && /^[0-9a-f]+$/.test(hex)
}

/** Reads a GetObject body whole into a fresh buffer, ending early when `signal` fires. */
async function readBody (body: unknown, length: number | undefined, signal: AbortSignal): Promise<Uint8Array> {
  if (!(body instanceof Readable)) throw new BazilError(ErrorCode.PROTOCOL, 'GetObject returned no readable body')
  const stop = (): void => { body.destroy(new Error('request aborted')) }
  signal.addEventListener('abort', stop, { once: true })
  try {
    if (signal.aborted) stop()
    const chunks: Buffer[] = []
    let received = 0
    for await (const chunk of body as AsyncIterable<Buffer>) {
      chunks.push(chunk)
      received += chunk.byteLength
    }
    if (length !== undefined && received !== length) {
      throw new BazilError(ErrorCode.UNAVAILABLE, `GetObject body ended after ${received} of ${length} bytes`)
    }
    const value = new Uint8Array(received) // fresh memory, never a shared pool slab
    let at = 0
    for (const chunk of chunks) { value.set(chunk, at); at += chunk.byteLength }
    return value
  } finally {
    signal.removeEventListener('abort', stop)
  }
}

/** At most `n` requests in flight; the rest wait in order for a slot, their signal, or close(). */
class Slots {
  #free: number
  readonly #waiting = new Set<(err?: BazilError) => void>()
  #refusal: (() => BazilError) | undefined

  constructor (n: number) {
    this.#free = n
  }

  async acquire (signal: AbortSignal | undefined): Promise<void> {
    if (this.#refusal !== undefined) throw this.#refusal()
    throwIfAborted(signal)
    if (this.#free > 0) { this.#free--; return }
    await new Promise<void>((resolve, reject) => {
      const settle = (err?: BazilError): void => {
        this.#waiting.delete(settle)
        signal?.removeEventListener('abort', onAbort)
        if (err === undefined) resolve()
        else reject(err)
      }
      const onAbort = (): void => { settle(new BazilError(ErrorCode.ABORTED, 'operation aborted', { cause: signal?.reason })) }
      this.#waiting.add(settle)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Hands the slot to the first waiter, or frees it. */
  release (): void {
    const next = this.#waiting.values().next()
    if (next.done === true) this.#free++
    else next.value()
  }

  close (refusal: () => BazilError): void {
    this.#refusal = refusal
    for (const settle of [...this.#waiting]) settle(refusal())
  }
}
