/**
 * Namespaced, injected logging: silent by default, on with DEBUG=bazil:*. No `console` outside
 * the CLI; everything else takes a Logger (or makes one with `logger('bazil:cas')`).
 */
import debug from 'debug'

export interface Logger {
  (formatter: string, ...args: unknown[]): void
  error: (formatter: string, ...args: unknown[]) => void
  enabled: boolean
}

export function logger (namespace: string): Logger {
  const log = debug(namespace) as unknown as Logger
  const err = debug(`${namespace}:error`)
  log.error = (formatter: string, ...args: unknown[]) => { err(formatter, ...args) }
  return log
}
