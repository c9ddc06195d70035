/**
 * File steps of the SFTP store over one SftpSession: whole-file reads and writes with many chunk
 * requests in flight (an SFTP server answers each READ/WRITE separately, so one at a time is
 * bound by round trips), and the small steps (stat, rename, mkdir -p, readdir) with the quirks
 * of SFTP v3 handled once, here.
 */
import type { FileEntry, Stats } from 'ssh2'
import { posix } from 'node:path'
import { BazilError, ErrorCode, isBazilError } from '../errors.ts'
import { pipelined } from './sftp-calls.ts'
import type { SftpSession } from './sftp-session.ts'

/** Chunk requests in flight per transfer: enough to fill the SSH window on a fast link. */
const TRANSFER_DEPTH = 16
/** A guard against a bogus size from the server; objects are sealed chunks (about 1 MiB). */
const MAX_FILE_BYTES = 256 * 1024 * 1024

/** Reads a whole file. Once `signal` fires no new reads start; the handle is always closed. */
export async function readWhole (session: SftpSession, path: string, what: string, signal: AbortSignal): Promise<Buffer> {
  const { sftp } = session
  const handle = await session.request<Buffer>(what, cb => { sftp.open(path, 'r', cb) })
  try {
    const { size } = await session.request<Stats>(what, cb => { sftp.fstat(handle, cb) })
    if (size > MAX_FILE_BYTES) throw new BazilError(ErrorCode.TOO_BIG, `${what}: object of ${size} bytes`)
    const value = Buffer.allocUnsafe(size)
    await pipelined(size, session.maxReadLen, TRANSFER_DEPTH, signal, async (offset, length) => {
      for (let done = 0; done < length;) {
        const read = await session.request<number>(what, cb => {
          sftp.read(handle, value, offset + done, length - done, offset + done, (err, n) => { cb(err, n) })
        })
        if (read === 0) throw new BazilError(ErrorCode.IO, `${what}: object ended at ${offset + done} of ${size} bytes`)
        done += read
      }
    })
    return value
  } finally {
    // A failed close after a complete read loses nothing: the server drops the handle anyway.
    await session.request(what, cb => { sftp.close(handle, cb) }).catch(() => {})
  }
}

/**
 * Writes `value` to a new file (failing if it exists), fsyncs it if asked and the server can,
 * and closes it. On failure (or once `signal` fires) it removes what it wrote, then throws.
 */
export async function writeNew (session: SftpSession, path: string, value: Buffer, fsync: boolean,
  what: string, signal: AbortSignal): Promise<void> {
  const { sftp } = session
  const handle = await session.request<Buffer>(what, cb => { sftp.open(path, 'wx', { mode: 0o600 }, cb) })
  let open = true
  try {
    await pipelined(value.byteLength, session.maxWriteLen, TRANSFER_DEPTH, signal, async (offset, length) => {
      await session.request(what, cb => { sftp.write(handle, value, offset, length, offset, cb) })
    })
    if (fsync && session.hasFsync) await session.request(what, cb => { sftp.ext_openssh_fsync(handle, cb) })
    open = false
    await session.request(what, cb => { sftp.close(handle, cb) }) // a write error may surface here
  } catch (err) {
    if (open) await session.request(what, cb => { sftp.close(handle, cb) }).catch(() => {})
    await remove(session, path, what).catch(() => {}) // gone with the connection: swept on a later open
    throw err
  }
}

export async function exists (session: SftpSession, path: string, what: string): Promise<boolean> {
  try {
    await session.request<Stats>(what, cb => { session.sftp.stat(path, cb) })
    return true
  } catch (err) {
    if (isBazilError(err, ErrorCode.NOT_FOUND)) return false
    throw err
  }
}

/** Removes a file; an absent one is not an error. */
export async function remove (session: SftpSession, path: string, what: string): Promise<void> {
  try {
    await session.request(what, cb => { session.sftp.unlink(path, cb) })
  } catch (err) {
    if (!isBazilError(err, ErrorCode.NOT_FOUND)) throw err
  }
}

export async function readdir (session: SftpSession, dir: string, what: string): Promise<FileEntry[]> {
  return await session.request<FileEntry[]>(what, cb => { session.sftp.readdir(dir, cb) })
}

/**
 * posix-rename@openssh.com replaces the target atomically. A server without it gets a plain
 * SFTP rename, which fails if the target exists: then the object is already there (another put
 * of the same content won) and the source goes.
 */
export async function rename (session: SftpSession, from: string, to: string, what: string): Promise<void> {
  if (session.hasPosixRename) {
    await session.request(what, cb => { session.sftp.ext_openssh_rename(from, to, cb) })
    return
  }
  try {
    await session.request(what, cb => { session.sftp.rename(from, to, cb) })
  } catch (err) {
    if (isBazilError(err, ErrorCode.NOT_FOUND) || !await exists(session, to, what)) throw err
    await remove(session, from, what)
  }
}

/** mkdir that accepts a dir already there (made meanwhile by another put or machine). */
export async function makeDir (session: SftpSession, dir: string): Promise<void> {
  try {
    await session.request(`mkdir ${dir}`, cb => { session.sftp.mkdir(dir, { mode: 0o700 }, cb) })
  } catch (err) {
    // SFTP v3 reports an existing dir as a generic FAILURE: look before judging.
    const stats = await session.request<Stats>(`mkdir ${dir}`, cb => { session.sftp.stat(dir, cb) }).catch(() => undefined)
    if (stats?.isDirectory() !== true) throw err
  }
}

/** `mkdir -p`. */
export async function makeDirs (session: SftpSession, dir: string): Promise<void> {
  if (await exists(session, dir, `mkdir ${dir}`)) return
  const parent = posix.dirname(dir)
  if (parent !== dir && parent !== '.') await makeDirs(session, parent)
  await makeDir(session, dir)
}
