/**
 * Garbage-collector tuning for the daemon process (the CLI is short-lived and is left alone).
 *
 * V8 sizes the old generation's next collection limit at live size × a growing factor that it
 * picks from how fast collections are; the daemon's heap (~25 MB live: libp2p, the namespace)
 * collects fast, so the factor came out near 2 and the slack near 24 MB. While a peer streams
 * chunks, in-flight requests survive two scavenges and are promoted at a rate that used up
 * that slack every ~100 ms: 92–118 full mark-compacts in a 512 MiB read from a peer, and V8's
 * helper threads used ~4.5 s of CPU in it. With the factor at 4 there were 21–22, and the
 * daemon's user CPU fell by a quarter to a half. The cost is a larger heap between collections
 * (up to ~4× live, ~100 MB). See DECISIONS.md, "Garbage collection: a larger growing factor".
 *
 * `heap-growing-percent` is read at every collection, so setting it after start works (checked
 * with --trace-gc); V8 offers no other switch for this, and a flag on the node command line
 * would not reach a daemon started by `bazil start --foreground` from a service manager.
 */
import { setFlagsFromString } from 'node:v8'

export const HEAP_GROWING_PERCENT = 300

export function tuneDaemonGc (): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}
