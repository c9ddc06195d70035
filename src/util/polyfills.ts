/**
 * Runtime polyfills for Node 20 that dependencies expect from Node 22 (libp2p 3 calls
 * `Promise.withResolvers`). Imported first by `scripts/bazil.mjs` (and by vitest's setup);
 * idempotent and side-effect only.
 */

interface Resolvers<T> {
  promise: Promise<T>
  resolve: (value: T | PromiseLike<T>) => void
  reject: (reason?: unknown) => void
}

const promiseConstructor = Promise as unknown as { withResolvers?: unknown }

if (typeof promiseConstructor.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    // `this` keeps subclasses working, as the native method does.
    value: function withResolvers<T> (this: PromiseConstructor): Resolvers<T> {
      let resolve!: Resolvers<T>['resolve']
      let reject!: Resolvers<T>['reject']
      const promise = new this<T>((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    },
    writable: true,
    configurable: true,
    enumerable: false
  })
}

export {}
