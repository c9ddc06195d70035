/**
 * /bazil/block/1.0.0: paired devices ask each other for sealed blocks by id. See
 * block-exchange.proto for the exchange, constants.ts for its bounds, service.ts for the API.
 */
export { blockExchange } from './service.ts'
export type { BlockExchange, BlockExchangeComponents, BlockExchangeInit, BlockResult } from './service.ts'
export * from './constants.ts'
