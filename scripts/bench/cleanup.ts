/**
 * A stack of cleanup steps (unmount, stop a daemon, remove a temp dir) that runs last-in
 * first-out whether the bench finishes, fails or is interrupted, so no run leaves a mount or a
 * process behind.
 */
export type CleanupStep = () => Promise<unknown>

export class Cleanup {
  private readonly steps: Array<{ name: string, step: CleanupStep }> = []

  /** Registers a step; returns a function that runs it now (once) and takes it off the stack. */
  defer (name: string, step: CleanupStep): () => Promise<void> {
    const entry = { name, step }
    this.steps.push(entry)
    return async () => {
      const index = this.steps.indexOf(entry)
      if (index === -1) return
      this.steps.splice(index, 1)
      await entry.step()
    }
  }

  /** Runs every remaining step, newest first; a failing step is reported and the rest still run. */
  async runAll (): Promise<void> {
    while (this.steps.length > 0) {
      const entry = this.steps.pop()
      if (entry === undefined) break
      try {
        await entry.step()
      } catch (error) {
        process.stderr.write(`cleanup "${entry.name}" failed: ${(error as Error).message}\n`)
      }
    }
  }
}
