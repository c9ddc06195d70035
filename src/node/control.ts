/**
 * The control socket: a unix socket in the data dir (mode 0600) that serves a running node's
 * NodeApi to the CLI as newline-delimited JSON. A request is `{id, method, params}`; the answer
 * is `{id, result}` or `{id, error: {code, message}}`, so BazilError codes survive the trip.
 * Requests are size-bounded; `cancel` aborts an in-flight request; a dropped connection aborts
 * all of its requests. `connectControl` is the typed client (NOT_RUNNING when nobody listens).
 */
import { createConnection, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { chmod, lstat, rm } from 'node:fs/promises'
import { StringDecoder } from 'node:string_decoder'
import { BazilError, ErrorCode, isBazilError } from '../errors.ts'
import { logger } from '../util/log.ts'
import type { CheckReport, ConflictReport, NodeApi, PeerInfo, PolicyReport, StatusReport, StoreInfo, SyncReport, TransferProgress, TransferReport } from './api.ts'

const log = logger('bazil:control')

/** Largest request line the server accepts. */
export const CONTROL_MAX_REQUEST_BYTES = 64 * 1024
/** Largest response line the client accepts (a check report can list many paths). */
export const CONTROL_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
export const CONTROL_CONNECT_TIMEOUT_MS = 5_000
/** Default deadline for quick calls (ping, status). `check` has none unless asked. */
export const CONTROL_CALL_TIMEOUT_MS = 15_000
/** Stopping unmounts and flushes; give it time. */
export const CONTROL_STOP_TIMEOUT_MS = 120_000
/** How long closing the server waits for in-flight requests to answer. */
export const CONTROL_CLOSE_GRACE_MS = 5_000
/** Longest path a unix socket address can hold on Linux (sun_path less the NUL). */
const MAX_SOCKET_PATH_BYTES = 107

export interface PingReply { pid: number }

/** NodeApi over the socket; every call also takes a deadline (`timeoutMs`) and a signal. */
export interface ControlClient extends NodeApi {
  ping: (options?: CallOptions) => Promise<PingReply>
  status: (options?: CallOptions) => Promise<StatusReport>
  check: (options?: CallOptions) => Promise<CheckReport>
  stop: (options?: CallOptions) => Promise<void>
  storeAdd: (name: string, url: string, options?: CallOptions) => Promise<StoreInfo[]>
  storeList: (options?: CallOptions) => Promise<StoreInfo[]>
  peers: (options?: CallOptions) => Promise<PeerInfo[]>
  invite: (ttlMs?: number, options?: CallOptions) => Promise<{ code: string, expiresAt: number }>
  peersRemove: (peerId: string, options?: CallOptions) => Promise<PeerInfo[]>
  peersRename: (peerId: string, name: string, options?: CallOptions) => Promise<PeerInfo[]>
  storeRemove: (name: string, options?: CallOptions) => Promise<StoreInfo[]>
  storePolicy: (setting?: string, options?: CallOptions) => Promise<PolicyReport>
  syncStatus: (wait?: { timeoutMs: number }, options?: CallOptions) => Promise<SyncReport>
  conflicts: (options?: CallOptions) => Promise<ConflictReport[]>
  get: (path: string, options?: CallOptions & { dryRun?: boolean }) => Promise<TransferReport>
  push: (path: string, store: string, options?: CallOptions & { dryRun?: boolean }) => Promise<TransferReport>
  close: () => void
}

export interface CallOptions { signal?: AbortSignal, timeoutMs?: number, onProgress?: (progress: TransferProgress) => void }

export interface ControlServer {
  readonly socketPath: string
  /** Stops accepting, lets in-flight requests answer, then closes every connection. */
  close: () => Promise<void>
}

interface Request { id: number | string, method: string, params?: Record<string, unknown> }

export async function serveControl (api: NodeApi, socketPath: string, options: { closeGraceMs?: number } = {}): Promise<ControlServer> {
  checkSocketPath(socketPath)
  await removeStaleSocket(socketPath)
  const connections = new Set<Socket>()
  const inFlight = new Set<Promise<void>>()
  const server = createServer(socket => {
    connections.add(socket)
    socket.on('close', () => connections.delete(socket))
    serveConnection(socket, api, inFlight)
  })
  await listen(server, socketPath)
  await chmod(socketPath, 0o600)
  log('serving on %s', socketPath)
  let closing: Promise<void> | undefined
  return {
    socketPath,
    close: async () => {
      closing ??= (async () => {
        const closed = new Promise<void>(resolve => server.close(() => { resolve() }))
        // A handler that never settles must not hold the daemon up forever.
        let grace: NodeJS.Timeout | undefined
        await Promise.race([
          Promise.allSettled([...inFlight]),
          new Promise(resolve => { grace = setTimeout(resolve, options.closeGraceMs ?? CONTROL_CLOSE_GRACE_MS) })
        ])
        clearTimeout(grace)
        for (const socket of connections) socket.end()
        // Ending a socket aborts its requests (on 'close'); one that does not close is cut.
        const timer = setTimeout(() => { for (const socket of connections) socket.destroy() }, 1_000)
        await closed
        clearTimeout(timer)
        await rm(socketPath, { force: true })
      })()
      await closing
    }
  }
}

function serveConnection (socket: Socket, api: NodeApi, inFlight: Set<Promise<void>>): void {
  const controllers = new Map<number | string, AbortController>()
  const send = (message: unknown): void => {
    if (!socket.destroyed && socket.writable) socket.write(JSON.stringify(message) + '\n')
  }
  const handle = async (request: Request): Promise<void> => {
    if (request.method === 'cancel') {
      const target = request.params?.id
      if (typeof target === 'number' || typeof target === 'string') controllers.get(target)?.abort()
      send({ id: request.id, result: null })
      return
    }
    const controller = new AbortController()
    controllers.set(request.id, controller)
    try {
      const result = await dispatch(api, request, controller.signal, progress => { send({ id: request.id, progress }) })
      send({ id: request.id, result: result ?? null })
    } catch (err) {
      if (!isBazilError(err)) log.error('%s failed: %O', request.method, err)
      send({ id: request.id, error: wireError(err) })
    } finally {
      controllers.delete(request.id)
    }
  }
  readLines(socket, CONTROL_MAX_REQUEST_BYTES, line => {
    const request = parseRequest(line)
    if (request instanceof BazilError) {
      send({ id: null, error: wireError(request) })
      socket.end()
      return
    }
    const work = handle(request)
    inFlight.add(work)
    void work.finally(() => inFlight.delete(work))
  }, err => {
    send({ id: null, error: wireError(err) })
    socket.end()
  })
  socket.on('error', err => { log('connection error: %s', err.message) })
  socket.on('close', () => { for (const controller of controllers.values()) controller.abort() })
}

async function dispatch (api: NodeApi, request: Request, signal: AbortSignal, onProgress: (progress: TransferProgress) => void): Promise<unknown> {
  switch (request.method) {
    case 'ping': return { pid: process.pid } satisfies PingReply
    case 'status': return await api.status()
    case 'check': return await api.check({ signal })
    case 'stop': return await api.stop()
    case 'storeAdd': return await api.storeAdd(stringParam(request, 'name'), stringParam(request, 'url'))
    case 'storeList': return await api.storeList()
    case 'peers': return await api.peers()
    case 'invite': return await api.invite(typeof request.params?.ttlMs === 'number' ? request.params.ttlMs : undefined)
    case 'peersRemove': return await api.peersRemove(stringParam(request, 'peerId'))
    case 'peersRename': {
      if (api.peersRename === undefined) throw new BazilError(ErrorCode.NOT_SUPPORTED, 'this node cannot rename peers')
      return await api.peersRename(stringParam(request, 'peerId'), stringParam(request, 'name'))
    }
    case 'storeRemove': return await api.storeRemove(stringParam(request, 'name'))
    case 'storePolicy': {
      if (api.storePolicy === undefined) throw new BazilError(ErrorCode.NOT_SUPPORTED, 'this node has no replication policy')
      const setting = request.params?.setting
      return await api.storePolicy(typeof setting === 'string' ? setting : undefined)
    }
    case 'syncStatus': {
      if (api.syncStatus === undefined) throw new BazilError(ErrorCode.NOT_SUPPORTED, 'this node does not sync')
      const timeoutMs = request.params?.timeoutMs
      return await api.syncStatus(typeof timeoutMs === 'number' ? { timeoutMs } : undefined)
    }
    case 'conflicts': {
      if (api.conflicts === undefined) throw new BazilError(ErrorCode.NOT_SUPPORTED, 'this node does not sync')
      return await api.conflicts()
    }
    case 'get': return await api.get(stringParam(request, 'path'), { dryRun: request.params?.dryRun === true, signal, onProgress })
    case 'push': return await api.push(stringParam(request, 'path'), stringParam(request, 'store'), { dryRun: request.params?.dryRun === true, signal, onProgress })
    default: throw new BazilError(ErrorCode.NOT_SUPPORTED, `unknown control method: ${request.method}`)
  }
}

function stringParam (request: Request, name: string): string {
  const value = request.params?.[name]
  if (typeof value !== 'string' || value === '') throw new BazilError(ErrorCode.INVALID, `${request.method} needs a ${name}`)
  return value
}

function parseRequest (line: string): Request | BazilError {
  let value: unknown
  try { value = JSON.parse(line) } catch {
    return new BazilError(ErrorCode.PROTOCOL, 'control request is not valid JSON')
  }
  const request = value as Partial<Request> | null
  if (typeof request !== 'object' || request === null || typeof request.method !== 'string' ||
      (typeof request.id !== 'number' && typeof request.id !== 'string') ||
      (request.params !== undefined && (typeof request.params !== 'object' || request.params === null))) {
    return new BazilError(ErrorCode.PROTOCOL, 'control request needs an id, a method and optional params')
  }
  return request as Request
}

function wireError (err: unknown): { code: ErrorCode, message: string } {
  if (isBazilError(err)) return { code: err.code, message: err.message }
  return { code: ErrorCode.IO, message: err instanceof Error ? err.message : String(err) }
}

/**
 * Calls `onLine` for every newline-terminated line; `onError` once if a line grows past `max`
 * characters (a bound on memory; characters never outnumber bytes).
 */
function readLines (socket: Socket, max: number, onLine: (line: string) => void, onError: (err: BazilError) => void): void {
  const decoder = new StringDecoder('utf8')
  let parts: string[] = []
  let size = 0
  let failed = false
  const fail = (): void => {
    failed = true
    parts = []
    onError(new BazilError(ErrorCode.TOO_BIG, `control message larger than ${max} bytes`))
  }
  socket.on('data', (chunk: Buffer) => {
    if (failed || socket.destroyed) return
    let text = decoder.write(chunk)
    let newline: number
    while ((newline = text.indexOf('\n')) >= 0) {
      parts.push(text.slice(0, newline))
      text = text.slice(newline + 1)
      const line = parts.join('')
      parts = []
      size = 0
      if (line.length > max) { fail(); return }
      if (line.trim() !== '') onLine(line)
      if (socket.destroyed) return
    }
    parts.push(text)
    size += text.length
    if (size > max) fail()
  })
}

function checkSocketPath (socketPath: string): void {
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    throw new BazilError(ErrorCode.NAME_TOO_LONG,
      `the control socket path ${socketPath} is longer than ${MAX_SOCKET_PATH_BYTES} bytes; use a data dir with a shorter path`)
  }
}

/** Removes a socket file left by a dead daemon; refuses if a live one still answers on it. */
async function removeStaleSocket (socketPath: string): Promise<void> {
  let isSocket: boolean
  try { isSocket = (await lstat(socketPath)).isSocket() } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  if (!isSocket) throw new BazilError(ErrorCode.EXISTS, `${socketPath} exists and is not a socket; remove it`)
  const alive = await new Promise<boolean>(resolve => {
    const probe = createConnection(socketPath)
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => { resolve(false) })
  })
  if (alive) throw new BazilError(ErrorCode.LOCKED, `another daemon is already serving ${socketPath}`)
  await rm(socketPath, { force: true })
}

async function listen (server: Server, socketPath: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(socketPath, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', err => { log.error('control server error: %O', err) })
}

/** Connects to a daemon's control socket; NOT_RUNNING if no daemon listens there. */
export async function connectControl (socketPath: string, options: { connectTimeoutMs?: number } = {}): Promise<ControlClient> {
  const socket = await connect(socketPath, options.connectTimeoutMs ?? CONTROL_CONNECT_TIMEOUT_MS)
  const pending = new Map<number, { resolve: (value: unknown) => void, reject: (err: unknown) => void, onProgress?: (progress: TransferProgress) => void }>()
  let nextId = 1
  let closedError: BazilError | undefined
  const fail = (err: BazilError): void => {
    closedError ??= err
    for (const call of pending.values()) call.reject(err)
    pending.clear()
  }
  readLines(socket, CONTROL_MAX_RESPONSE_BYTES, line => {
    let message: { id?: unknown, result?: unknown, progress?: unknown, error?: { code?: unknown, message?: unknown } }
    try { message = JSON.parse(line) } catch {
      fail(new BazilError(ErrorCode.PROTOCOL, 'the daemon sent a reply that is not JSON'))
      socket.destroy()
      return
    }
    if (typeof message.id !== 'number') {
      fail(errorFromWire(message.error))
      socket.destroy()
      return
    }
    const call = pending.get(message.id)
    if (call === undefined) return
    if (message.progress !== undefined) {
      call.onProgress?.(message.progress as TransferProgress)
      return
    }
    pending.delete(message.id)
    if (message.error !== undefined) call.reject(errorFromWire(message.error))
    else call.resolve(message.result)
  }, err => { fail(err); socket.destroy() })
  socket.on('error', err => { fail(new BazilError(ErrorCode.CLOSED, `control connection failed: ${err.message}`, { cause: err })) })
  socket.on('close', () => { fail(new BazilError(ErrorCode.CLOSED, 'the daemon closed the control connection')) })

  const call = async <T>(method: string, params: Record<string, unknown>, callOptions: CallOptions, defaultTimeoutMs?: number): Promise<T> => {
    if (closedError !== undefined) throw closedError
    const signal = callOptions.signal
    if (signal?.aborted === true) throw new BazilError(ErrorCode.ABORTED, `${method} aborted`, { cause: signal.reason })
    const id = nextId++
    const timeoutMs = callOptions.timeoutMs ?? defaultTimeoutMs
    return await new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
      const abandon = (err: BazilError): void => {
        if (!pending.delete(id)) return
        cleanup()
        if (!socket.destroyed) socket.write(JSON.stringify({ id: nextId++, method: 'cancel', params: { id } }) + '\n')
        reject(err)
      }
      const onAbort = (): void => { abandon(new BazilError(ErrorCode.ABORTED, `${method} aborted`, { cause: signal?.reason })) }
      pending.set(id, {
        resolve: value => { cleanup(); resolve(value as T) },
        reject: err => { cleanup(); reject(err) },
        onProgress: callOptions.onProgress
      })
      signal?.addEventListener('abort', onAbort, { once: true })
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => { abandon(new BazilError(ErrorCode.TIMEOUT, `the daemon did not answer ${method} within ${timeoutMs / 1000} s`)) }, timeoutMs)
      }
      socket.write(JSON.stringify({ id, method, params }) + '\n')
    })
  }

  return {
    ping: async (o = {}) => await call<PingReply>('ping', {}, o, CONTROL_CALL_TIMEOUT_MS),
    status: async (o = {}) => await call<StatusReport>('status', {}, o, CONTROL_CALL_TIMEOUT_MS),
    check: async (o = {}) => await call<CheckReport>('check', {}, o),
    stop: async (o = {}) => { await call<null>('stop', {}, o, CONTROL_STOP_TIMEOUT_MS) },
    storeAdd: async (name, url, o = {}) => await call<StoreInfo[]>('storeAdd', { name, url }, o, CONTROL_STOP_TIMEOUT_MS),
    storeList: async (o = {}) => await call<StoreInfo[]>('storeList', {}, o, CONTROL_CALL_TIMEOUT_MS),
    peers: async (o = {}) => await call<PeerInfo[]>('peers', {}, o, CONTROL_CALL_TIMEOUT_MS),
    invite: async (ttlMs, o = {}) => await call<{ code: string, expiresAt: number }>('invite', ttlMs === undefined ? {} : { ttlMs }, o, CONTROL_CALL_TIMEOUT_MS),
    peersRemove: async (peerId, o = {}) => await call<PeerInfo[]>('peersRemove', { peerId }, o, CONTROL_CALL_TIMEOUT_MS),
    peersRename: async (peerId, name, o = {}) => await call<PeerInfo[]>('peersRename', { peerId, name }, o, CONTROL_CALL_TIMEOUT_MS),
    storeRemove: async (name, o = {}) => await call<StoreInfo[]>('storeRemove', { name }, o, CONTROL_STOP_TIMEOUT_MS),
    storePolicy: async (setting, o = {}) => await call<PolicyReport>('storePolicy', setting === undefined ? {} : { setting }, o, CONTROL_STOP_TIMEOUT_MS),
    syncStatus: async (wait, o = {}) => await call<SyncReport>('syncStatus', wait === undefined ? {} : { timeoutMs: wait.timeoutMs }, o, wait === undefined ? CONTROL_CALL_TIMEOUT_MS : wait.timeoutMs + CONTROL_CALL_TIMEOUT_MS),
    conflicts: async (o = {}) => await call<ConflictReport[]>('conflicts', {}, o, CONTROL_CALL_TIMEOUT_MS),
    get: async (path, o = {}) => await call<TransferReport>('get', { path, dryRun: o.dryRun === true }, o),
    push: async (path, store, o = {}) => await call<TransferReport>('push', { path, store, dryRun: o.dryRun === true }, o),
    close: () => { socket.end(); socket.unref() }
  }
}

async function connect (socketPath: string, timeoutMs: number): Promise<Socket> {
  return await new Promise<Socket>((resolve, reject) => {
    const socket = createConnection(socketPath)
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new BazilError(ErrorCode.TIMEOUT, `no answer from the control socket ${socketPath} within ${timeoutMs / 1000} s`))
    }, timeoutMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.off('error', onError)
      resolve(socket)
    })
    const onError = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer)
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        reject(new BazilError(ErrorCode.NOT_RUNNING, `no Bazil daemon is running (nothing listens on ${socketPath})`, { cause: err }))
      } else if (err.code === 'EACCES' || err.code === 'EPERM') {
        reject(new BazilError(ErrorCode.PERMISSION, `not allowed to use the control socket ${socketPath}`, { cause: err }))
      } else {
        reject(new BazilError(ErrorCode.UNAVAILABLE, `cannot reach the control socket ${socketPath}: ${err.message}`, { cause: err }))
      }
    }
    socket.once('error', onError)
  })
}

function errorFromWire (error: { code?: unknown, message?: unknown } | undefined): BazilError {
  const code = typeof error?.code === 'string' && Object.hasOwn(ErrorCode, error.code) ? error.code as ErrorCode : ErrorCode.PROTOCOL
  const message = typeof error?.message === 'string' ? error.message : 'the daemon sent a malformed error'
  return new BazilError(code, message)
}
