/**
 * What every bench run gets, and what it must be: a run measures one area (the file system
 * today; block exchange, sync and remote stores later) and returns its section of
 * docs/BENCHMARKS.md. Runs are listed in `main.ts`.
 */
import type { Cleanup } from './cleanup.ts'
import type { MachineFacts } from './machine.ts'
import type { Section } from './report.ts'
import type { TargetName } from './targets.ts'

export interface BenchContext {
  /** A fresh directory on the machine's disk, removed after the bench. */
  workDir: string
  /** Smaller sizes for a run of a minute or so. */
  quick: boolean
  /** Which targets to measure, from `--only`. */
  targets: TargetName[]
  cleanup: Cleanup
  machine: MachineFacts
  /** The command line that ran the bench, for the report. */
  command: string
  /** When the bench started (all sections of one bench share it). */
  startedAt: Date
  log: (line: string) => void
}

export interface BenchRun {
  id: string
  describe: string
  run: (context: BenchContext) => Promise<RunOutcome>
}

export interface RunOutcome {
  section: Section
  /** Problems that stopped a measurement (not slow results); the bench exits non-zero if any. */
  errors: string[]
}
