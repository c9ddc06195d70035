import { describe, it, expect } from 'vitest'
import { humanBytes } from '../../src/cli/format.ts'
import { describeError, exitCodeFor, ExitCode } from '../../src/cli/exit.ts'
import { BazilError, ErrorCode } from '../../src/errors.ts'

describe('humanBytes', () => {
  it('uses binary units with at most three significant digits', () => {
    expect(humanBytes(0)).toBe('0 B')
    expect(humanBytes(1023)).toBe('1023 B')
    expect(humanBytes(1024)).toBe('1 KiB')
    expect(humanBytes(1536)).toBe('1.5 KiB')
    expect(humanBytes(10 * 1024 + 512)).toBe('10.5 KiB')
    expect(humanBytes(120 * 1024 * 1024)).toBe('120 MiB')
    expect(humanBytes(1.25 * 1024 ** 3)).toBe('1.25 GiB')
    expect(humanBytes(3 * 1024 ** 6)).toBe('3072 PiB')
  })
})

describe('exit codes and messages', () => {
  it('maps error codes to exit codes', () => {
    expect(exitCodeFor(new BazilError(ErrorCode.NOT_INITIALIZED, 'x'))).toBe(ExitCode.NOT_INITIALIZED)
    expect(exitCodeFor(new BazilError(ErrorCode.NOT_RUNNING, 'x'))).toBe(ExitCode.NOT_RUNNING)
    expect(exitCodeFor(new BazilError(ErrorCode.LOCKED, 'x'))).toBe(ExitCode.FAILURE)
    expect(exitCodeFor(new Error('x'))).toBe(ExitCode.FAILURE)
  })

  it('prints a sentence and a hint, and a stack only in debug mode', () => {
    const err = new BazilError(ErrorCode.NOT_RUNNING, 'no Bazil daemon is running')
    expect(describeError(err, false)).toBe('bazil: no Bazil daemon is running\nStart it with `bazil start`.')
    expect(describeError(err, true)).toMatch(/\n\s+at /)
    expect(describeError(new TypeError('boom'), false)).toBe('bazil: unexpected error: boom\nSet DEBUG=bazil:* to see the details.')
  })
})
