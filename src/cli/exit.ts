/**
 * Exit codes and the sentences a person sees when a command fails. Only the CLI turns
 * BazilError codes into these; a stack trace is shown only when DEBUG is set.
 */
import { ErrorCode, isBazilError } from '../errors.ts'

export const ExitCode = {
  OK: 0,
  /** The command ran and failed (or `check` found problems). */
  FAILURE: 1,
  /** Bad command line. */
  USAGE: 2,
  NOT_INITIALIZED: 3,
  NOT_RUNNING: 4,
  /** Interrupted by Ctrl-C (128 + SIGINT). */
  INTERRUPTED: 130
} as const

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

const exitCodes: Partial<Record<ErrorCode, ExitCode>> = {
  [ErrorCode.NOT_INITIALIZED]: ExitCode.NOT_INITIALIZED,
  [ErrorCode.NOT_RUNNING]: ExitCode.NOT_RUNNING,
  [ErrorCode.ABORTED]: ExitCode.INTERRUPTED
}

/** A next step to suggest after the error's own sentence. */
const hints: Partial<Record<ErrorCode, string>> = {
  [ErrorCode.NOT_RUNNING]: 'Start it with `bazil start`.',
  [ErrorCode.LOCKED]: 'Stop it with `bazil stop`, or pick another data dir with --home.',
  [ErrorCode.PERMISSION]: 'Check who owns the data dir, or pick another with --home.',
  [ErrorCode.NO_SPACE]: 'Free some disk space and try again.',
  [ErrorCode.CORRUPT]: 'Run `bazil check` to see which files are affected.'
}

export function exitCodeFor (err: unknown): ExitCode {
  return isBazilError(err) ? exitCodes[err.code] ?? ExitCode.FAILURE : ExitCode.FAILURE
}

/** The text to print on stderr for a failed command (without the trailing newline). */
export function describeError (err: unknown, debug = isDebug()): string {
  const lines: string[] = []
  if (isBazilError(err)) {
    lines.push(`bazil: ${err.message}`)
    const hint = hints[err.code]
    if (hint !== undefined) lines.push(hint)
  } else {
    lines.push(`bazil: unexpected error: ${err instanceof Error ? err.message : String(err)}`)
    if (!debug) lines.push('Set DEBUG=bazil:* to see the details.')
  }
  if (debug) lines.push(stackOf(err))
  return lines.join('\n')
}

export function isDebug (env: NodeJS.ProcessEnv = process.env): boolean {
  return env.DEBUG !== undefined && env.DEBUG !== ''
}

function stackOf (err: unknown): string {
  const parts: string[] = []
  let current: unknown = err
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    parts.push(current instanceof Error ? current.stack ?? current.message : String(current))
    current = current instanceof Error ? current.cause : undefined
    if (current !== undefined) parts.push('caused by:')
  }
  return parts.join('\n')
}
