/**
 * One error type for all of Bazil. Every failure carries a stable `code` from the table below;
 * tests assert on codes, never on message text. Codes become errno only in `src/fs/fuse.ts`,
 * wire statuses only in `protocols/`, exit codes and sentences only in `src/cli/`.
 */

export const ErrorCode = {
  NOT_FOUND: 'NOT_FOUND',
  EXISTS: 'EXISTS',
  CORRUPT: 'CORRUPT',
  ABORTED: 'ABORTED',
  TIMEOUT: 'TIMEOUT',
  UNAVAILABLE: 'UNAVAILABLE',
  CONFLICT: 'CONFLICT',
  PROTOCOL: 'PROTOCOL',
  CLOSED: 'CLOSED',
  INVALID: 'INVALID',
  NO_SPACE: 'NO_SPACE',
  IO: 'IO',
  BUSY: 'BUSY',
  LOCKED: 'LOCKED',
  NOT_EMPTY: 'NOT_EMPTY',
  NOT_DIR: 'NOT_DIR',
  IS_DIR: 'IS_DIR',
  NAME_TOO_LONG: 'NAME_TOO_LONG',
  NO_ATTR: 'NO_ATTR',
  NOT_SUPPORTED: 'NOT_SUPPORTED',
  PERMISSION: 'PERMISSION',
  BAD_HANDLE: 'BAD_HANDLE',
  TOO_BIG: 'TOO_BIG',
  RANGE: 'RANGE',
  NOT_INITIALIZED: 'NOT_INITIALIZED',
  NOT_RUNNING: 'NOT_RUNNING'
} as const

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

export class BazilError extends Error {
  readonly code: ErrorCode

  constructor (code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'BazilError'
    this.code = code
  }
}

/**
 * A BazilError without a stack trace, for answers that are normal traffic rather than faults
 * (a lookup of a name that does not exist, an absent xattr): the kernel asks for these on
 * nearly every create and write, and capturing a stack costs more than the answer.
 */
export function expectedError (code: ErrorCode, message: string): BazilError {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return new BazilError(code, message)
  } finally {
    Error.stackTraceLimit = limit
  }
}

export function isBazilError (err: unknown, code?: ErrorCode): err is BazilError {
  return err instanceof BazilError && (code === undefined || err.code === code)
}

/** Maps a Node system error (ENOENT, ENOSPC, ...) to a BazilError, keeping it as the cause. */
export function fromSystemError (err: unknown, what: string): BazilError {
  if (err instanceof BazilError) return err
  const sys = err as NodeJS.ErrnoException
  const code = systemCodes[sys?.code ?? ''] ?? ErrorCode.IO
  return new BazilError(code, `${what}: ${sys?.message ?? String(err)}`, { cause: err })
}

const systemCodes: Record<string, ErrorCode> = {
  ENOENT: ErrorCode.NOT_FOUND,
  EEXIST: ErrorCode.EXISTS,
  ENOSPC: ErrorCode.NO_SPACE,
  EDQUOT: ErrorCode.NO_SPACE,
  EACCES: ErrorCode.PERMISSION,
  EPERM: ErrorCode.PERMISSION,
  ENOTDIR: ErrorCode.NOT_DIR,
  EISDIR: ErrorCode.IS_DIR,
  ENOTEMPTY: ErrorCode.NOT_EMPTY,
  EBUSY: ErrorCode.BUSY,
  ABORT_ERR: ErrorCode.ABORTED
}

/** Throws ABORTED if the signal has fired. */
export function throwIfAborted (signal?: AbortSignal): void {
  if (signal?.aborted === true) {
    throw new BazilError(ErrorCode.ABORTED, 'operation aborted', { cause: signal.reason })
  }
}
