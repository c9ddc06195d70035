/**
 * The files the crash writer produces: name, size (0–3 MiB) and content follow from the prefix
 * and index alone, so the test can check survivors without talking to the writer.
 */
import { createHash } from 'node:crypto'
import { createRng, deterministicBytes } from './rng.ts'

export const CRASH_FILE_MAX = 3 * 1024 * 1024

export function crashFile (prefix: string, index: number): { name: string, data: Buffer } {
  const key = Number.parseInt(createHash('sha256').update(`${prefix}:${index}`).digest('hex').slice(0, 8), 16)
  // Every seventh file is empty; the rest spread over the whole range, chunk boundaries included.
  const size = index % 7 === 3 ? 0 : createRng(key).int(1, CRASH_FILE_MAX)
  return { name: `${prefix}-${index}.bin`, data: deterministicBytes(key, size) }
}
