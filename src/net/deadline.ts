/**
 * A timer-backed AbortSignal that also follows a parent signal, and can tell afterwards which
 * of the two fired: the difference between TIMEOUT (ours) and ABORTED (the caller's). Unlike
 * AbortSignal.any, `clear()` detaches from the parent at once, so a long-lived parent does
 * not collect a listener per frame.
 */

export interface Deadline {
  signal: AbortSignal
  /** True once the timer fired (and the parent had not fired first). */
  timedOut: () => boolean
  /** Stops the timer and detaches from the parent. */
  clear: () => void
}

export function deadline (ms: number, parent?: AbortSignal): Deadline {
  const controller = new AbortController()
  let timedOut = false
  const onParentAbort = (): void => { controller.abort(parent?.reason) }
  const timer = setTimeout(() => {
    timedOut = true
    controller.abort(new Error(`deadline of ${ms} ms passed`))
  }, ms)
  timer.unref?.()
  if (parent?.aborted === true) onParentAbort()
  else parent?.addEventListener('abort', onParentAbort, { once: true })
  return {
    signal: controller.signal,
    timedOut: () => timedOut && parent?.aborted !== true,
    clear: () => {
      clearTimeout(timer)
      parent?.removeEventListener('abort', onParentAbort)
    }
  }
}

/**
 * Waits for `promise` unless `signal` fires first; then rejects with the signal's reason and
 * leaves the promise to settle unobserved. For work that does not take a signal itself.
 */
export async function untilAborted<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw signal.reason
  let onAbort = (): void => {}
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => {
      onAbort = () => { reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
