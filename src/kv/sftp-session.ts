/**
 * One SSH connection carrying one SFTP session, for the SFTP store (src/kv/sftp.ts): connects
 * with key authentication only, verifies the server's host key (pinned, or trusted on first use
 * through a callback; never silently), turns Nagle off, and runs SFTP requests as promises that
 * reject with UNAVAILABLE the moment the connection ends, so nothing waits on a dead server.
 *
 * Host keys are named the way OpenSSH names them: `publicKey` is the base64 of the raw SSH
 * public key blob (the second field of a known_hosts line) and `fingerprint` is `SHA256:<base64>`
 * as `ssh-keygen -l` prints it. A pinned key may be given as either.
 */
import { createHash } from 'node:crypto'
import { Client } from 'ssh2'
import type { Algorithms, ServerHostKeyAlgorithm, SFTPWrapper } from 'ssh2'
import { BazilError, ErrorCode } from '../errors.ts'
import { logger } from '../util/log.ts'

const log = logger('bazil:kv:sftp')

export interface HostKey {
  /** The key's type as the server sent it, e.g. `ssh-ed25519`. */
  algorithm: string
  /** Base64 of the raw public key blob (what known_hosts stores). */
  publicKey: string
  /** `SHA256:<base64 without padding>`. */
  fingerprint: string
}

export interface HostKeyPolicy {
  /** The pinned host key: base64 of the raw key (or a `type base64` line), or a SHA256 fingerprint. */
  known?: string
  /** No pinned key: called with the key the server showed; persist it and resolve to trust it. */
  onFirstUse?: (key: HostKey) => Promise<void>
}

export interface SessionConfig {
  host: string
  port: number
  username: string
  privateKey: Buffer | string
  hostKey: HostKeyPolicy
  timeoutMs: number
}

/**
 * SSH keepalives: a connection that stops answering (a silent network, a frozen server) is
 * declared dead after about KEEPALIVE_INTERVAL_MS × (KEEPALIVE_COUNT_MAX + 1), failing its calls
 * with UNAVAILABLE before their deadlines and letting the next call reconnect.
 */
const KEEPALIVE_INTERVAL_MS = 5000
const KEEPALIVE_COUNT_MAX = 3

/** SFTP status codes (draft-ietf-secsh-filexfer-02) that the store tells apart. */
const SFTP_EOF = 1
const SFTP_NO_SUCH_FILE = 2
const SFTP_PERMISSION_DENIED = 3
const SFTP_OP_UNSUPPORTED = 8

type Callback<T> = (err?: Error | null, value?: T) => void

export class SftpSession {
  readonly sftp: SFTPWrapper
  /** The largest READ / WRITE payload the server takes (its limits@openssh.com answer). */
  readonly maxReadLen: number
  readonly maxWriteLen: number
  readonly hasPosixRename: boolean
  readonly hasFsync: boolean
  readonly #client: Client
  readonly #pending = new Set<(err: BazilError) => void>()
  #alive = true

  private constructor (client: Client, sftp: SFTPWrapper) {
    this.#client = client
    this.sftp = sftp
    const internals = sftp as unknown as { _maxReadLen?: number, _maxWriteLen?: number, _extensions?: Record<string, string> }
    this.maxReadLen = internals._maxReadLen ?? 32 * 1024
    this.maxWriteLen = internals._maxWriteLen ?? 32 * 1024
    this.hasPosixRename = internals._extensions?.['posix-rename@openssh.com'] !== undefined
    this.hasFsync = internals._extensions?.['fsync@openssh.com'] !== undefined
    const die = (why: string): void => { this.#die(why) }
    client.on('close', () => { die('connection closed') })
    client.on('error', (err: Error) => { die(`connection error: ${err.message}`) })
    sftp.on('close', () => { die('sftp session closed') })
  }

  get alive (): boolean {
    return this.#alive
  }

  /**
   * Issues one SFTP request (`issue` calls an SFTPWrapper method with the callback given) and
   * settles with its answer, mapped to a BazilError, or UNAVAILABLE once the connection ends.
   */
  async request<T> (what: string, issue: (cb: Callback<T>) => void): Promise<T> {
    if (!this.#alive) throw new BazilError(ErrorCode.UNAVAILABLE, `${what}: not connected`)
    return await new Promise<T>((resolve, reject) => {
      const fail = (err: BazilError): void => { this.#pending.delete(fail); reject(err) }
      this.#pending.add(fail)
      try {
        issue((err, value) => {
          if (!this.#pending.has(fail)) return // the connection ended first; already rejected
          this.#pending.delete(fail)
          if (err === null || err === undefined) resolve(value as T)
          else reject(fromSftpError(err, what))
        })
      } catch (err) {
        fail(fromSftpError(err, what))
      }
    })
  }

  /** Ends the connection; requests still waiting reject with UNAVAILABLE. */
  end (): void {
    this.#die('closed by the store')
    this.#client.end()
  }

  #die (why: string): void {
    if (!this.#alive) return
    this.#alive = false
    log('connection ended: %s (%d requests in flight)', why, this.#pending.size)
    const error = new BazilError(ErrorCode.UNAVAILABLE, `sftp: ${why}`)
    for (const fail of [...this.#pending]) fail(error)
    this.#client.end()
  }

  /** Connects, verifies the host key, authenticates and opens the SFTP subsystem. */
  static async connect (config: SessionConfig): Promise<SftpSession> {
    const where = `${config.username}@${config.host}:${config.port}`
    const client = new Client()
    let refusal: BazilError | undefined // why we rejected the host key, if we did
    return await new Promise<SftpSession>((resolve, reject) => {
      let settled = false
      const fail = (err: BazilError): void => {
        if (settled) return
        settled = true
        clearTimeout(guard)
        client.end()
        reject(err)
      }
      // ssh2's readyTimeout covers the handshake; this also covers the TCP connect and the
      // SFTP subsystem start.
      const guard = setTimeout(() => {
        fail(new BazilError(ErrorCode.TIMEOUT, `sftp ${where}: no session within ${config.timeoutMs} ms`))
      }, config.timeoutMs)
      client.on('connect', () => { client.setNoDelay(true) }) // Nagle on: 2 MB/s; off: 180–320 MB/s
      client.on('error', (err: Error & { level?: string }) => { fail(refusal ?? fromConnectError(err, where)) })
      client.on('close', () => { fail(refusal ?? new BazilError(ErrorCode.UNAVAILABLE, `sftp ${where}: connection closed during setup`)) })
      client.on('ready', () => {
        client.sftp((err, sftp) => {
          if (err !== undefined && err !== null) { fail(new BazilError(ErrorCode.UNAVAILABLE, `sftp ${where}: subsystem: ${err.message}`, { cause: err })); return }
          if (settled) { client.end(); return }
          settled = true
          clearTimeout(guard)
          client.removeAllListeners('error')
          client.removeAllListeners('close')
          const session = new SftpSession(client, sftp)
          log('connected to %s (read %d, write %d, posix-rename %s, fsync %s)', where,
            session.maxReadLen, session.maxWriteLen, session.hasPosixRename, session.hasFsync)
          resolve(session)
        })
      })
      const pinned = config.hostKey.known
      try {
        client.connect({
          host: config.host,
          port: config.port,
          username: config.username,
          privateKey: config.privateKey,
          tryKeyboard: false,
          readyTimeout: config.timeoutMs,
          keepaliveInterval: KEEPALIVE_INTERVAL_MS,
          keepaliveCountMax: KEEPALIVE_COUNT_MAX,
          algorithms: pinned === undefined ? undefined : hostKeyAlgorithms(pinned),
          hostVerifier: (raw: Buffer, verify: (ok: boolean) => void) => {
            void checkHostKey(raw, config.hostKey, where).then(() => { verify(true) }, (err: unknown) => {
              refusal = err instanceof BazilError ? err : new BazilError(ErrorCode.PERMISSION, `sftp ${where}: host key: ${String(err)}`, { cause: err })
              verify(false)
            })
          }
        })
      } catch (err) {
        fail(new BazilError(ErrorCode.INVALID, `sftp ${where}: ${(err as Error).message}`, { cause: err }))
      }
    })
  }
}

export function describeHostKey (raw: Buffer): HostKey {
  const length = raw.byteLength >= 4 ? raw.readUInt32BE(0) : 0
  return {
    algorithm: raw.subarray(4, 4 + length).toString('latin1'),
    publicKey: raw.toString('base64'),
    fingerprint: 'SHA256:' + createHash('sha256').update(raw).digest('base64').replace(/=+$/, '')
  }
}

/** Throws PERMISSION unless `raw` is the pinned key or the first-use callback accepts it. */
async function checkHostKey (raw: Buffer, policy: HostKeyPolicy, where: string): Promise<void> {
  const seen = describeHostKey(raw)
  if (policy.known !== undefined) {
    if (matchesPinned(policy.known, seen)) return
    throw new BazilError(ErrorCode.PERMISSION,
      `sftp ${where}: host key mismatch: the server showed ${seen.algorithm} ${seen.fingerprint}, ` +
      'which is not the pinned key (a changed server, or someone in between)')
  }
  if (policy.onFirstUse === undefined) {
    throw new BazilError(ErrorCode.PERMISSION,
      `sftp ${where}: no pinned host key and no first-use callback; the server showed ${seen.algorithm} ${seen.fingerprint}`)
  }
  try {
    await policy.onFirstUse(seen)
  } catch (err) {
    throw new BazilError(ErrorCode.PERMISSION, `sftp ${where}: host key ${seen.fingerprint} not trusted: ${(err as Error).message}`, { cause: err })
  }
  log('trusted %s host key %s on first use', where, seen.fingerprint)
}

/** Checks a pinned key's form; throws INVALID if it is neither a fingerprint nor a key. */
export function parsePinned (known: string): { fingerprint: string } | { raw: Buffer } {
  const text = known.trim()
  if (text.startsWith('SHA256:')) return { fingerprint: text.replace(/=+$/, '') }
  const field = text.split(/\s+/).find(part => /^AAAA[A-Za-z0-9+/]+={0,2}$/.test(part))
  if (field === undefined) throw new BazilError(ErrorCode.INVALID, 'pinned host key: not base64 of a raw SSH key nor a SHA256: fingerprint')
  return { raw: Buffer.from(field, 'base64') }
}

function matchesPinned (known: string, seen: HostKey): boolean {
  const pinned = parsePinned(known)
  if ('fingerprint' in pinned) return pinned.fingerprint === seen.fingerprint
  return pinned.raw.toString('base64') === seen.publicKey
}

/** Asks the server for the pinned key's type only, so a server with several keys shows it. */
function hostKeyAlgorithms (known: string): Algorithms | undefined {
  const pinned = parsePinned(known)
  if ('fingerprint' in pinned) return undefined
  const type = describeHostKey(pinned.raw).algorithm
  const offer = type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [type]
  return { serverHostKey: offer as ServerHostKeyAlgorithm[] }
}

function fromConnectError (err: Error & { level?: string, code?: string }, where: string): BazilError {
  if (err.level === 'client-authentication') {
    return new BazilError(ErrorCode.PERMISSION, `sftp ${where}: authentication failed (the server refused the key)`, { cause: err })
  }
  if (err.level === 'client-timeout') {
    return new BazilError(ErrorCode.TIMEOUT, `sftp ${where}: handshake timed out`, { cause: err })
  }
  return new BazilError(ErrorCode.UNAVAILABLE, `sftp ${where}: ${err.code ?? ''} ${err.message}`.replace(/ +/g, ' '), { cause: err })
}

/** Maps an ssh2 SFTP error (its `code` is the SFTP status) to a BazilError. */
export function fromSftpError (err: unknown, what: string): BazilError {
  if (err instanceof BazilError) return err
  const status = (err as { code?: unknown }).code
  const message = `${what}: ${(err as Error).message ?? String(err)}`
  switch (status) {
    case SFTP_NO_SUCH_FILE: return new BazilError(ErrorCode.NOT_FOUND, message, { cause: err })
    case SFTP_PERMISSION_DENIED: return new BazilError(ErrorCode.PERMISSION, message, { cause: err })
    case SFTP_OP_UNSUPPORTED: return new BazilError(ErrorCode.NOT_SUPPORTED, message, { cause: err })
    case SFTP_EOF: return new BazilError(ErrorCode.IO, `${message} (unexpected end of file)`, { cause: err })
  }
  // ssh2 fails requests with an uncoded "No response from server" when the channel goes away.
  if (typeof status !== 'number') return new BazilError(ErrorCode.UNAVAILABLE, message, { cause: err })
  return new BazilError(ErrorCode.IO, message, { cause: err })
}
