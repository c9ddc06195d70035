/**
 * The metadata's write-ahead log: one line of JSON per change, appended with a synchronous
 * write before the operation answers, so a change is safe from a crash of the daemon as soon
 * as it is in the kernel's page cache (tens of microseconds), while the level batches that
 * hold the same changes are written behind it, several changes at a time.
 *
 * Every record lists puts and deletes of whole keys, so replaying records that level already
 * has, in order, gives the same state: at open the whole log is replayed, then emptied. A torn
 * last line (a power cut during a write) does not parse and ends the replay; the log makes no
 * promise across a power cut (fsync goes through a synced level batch instead, see meta.ts).
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs'
import { fromSystemError } from '../errors.ts'

export type BatchOp = { type: 'put', key: string, value: string } | { type: 'del', key: string }

export class MetaLog {
  /** Bytes appended since the log was last emptied. */
  size = 0

  private constructor (private readonly fd: number, private readonly path: string) {}

  /** Opens (creating) the log at `path` and returns it with the records it holds. */
  static open (path: string): { log: MetaLog, records: BatchOp[][] } {
    let text = ''
    try {
      text = readFileSync(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, `reading ${path}`)
    }
    const records: BatchOp[][] = []
    for (const line of text.split('\n')) {
      if (line === '') continue
      try {
        records.push(JSON.parse(line) as BatchOp[])
      } catch {
        break // torn by a power cut: nothing after it was written either
      }
    }
    try {
      const log = new MetaLog(openSync(path, 'a', 0o600), path)
      log.size = Buffer.byteLength(text)
      return { log, records }
    } catch (err) {
      throw fromSystemError(err, `opening ${path}`)
    }
  }

  /** Appends one change; once this returns, it survives a crash of the process. */
  append (ops: BatchOp[]): void {
    const line = Buffer.from(`${JSON.stringify(ops)}\n`)
    let done = 0
    try {
      while (done < line.byteLength) done += writeSync(this.fd, line, done, line.byteLength - done)
    } catch (err) {
      // A partial line would not parse; cut it off so later records stay readable.
      if (done > 0) {
        try { ftruncateSync(this.fd, this.size) } catch {}
      }
      throw fromSystemError(err, `appending to ${this.path}`)
    }
    this.size += line.byteLength
  }

  /** Empties the log: call only when level holds every record in it. */
  clear (): void {
    try {
      ftruncateSync(this.fd, 0)
    } catch (err) {
      throw fromSystemError(err, `emptying ${this.path}`)
    }
    this.size = 0
  }

  close (): void {
    closeSync(this.fd)
  }
}
