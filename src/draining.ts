import fp from 'fastify-plugin';
import { serviceStopping } from './errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** True from the moment the instance begins to stop: /ready answers 503 from then on. */
    isDraining(): boolean;
    /** SIGTERM: /ready turns 503 at once, requests are still served for `delayMs`, then it resolves. */
    drain(delayMs: number): Promise<void>;
  }
}

const PROBES = new Set(['/health', '/ready']);

/**
 * How an instance leaves a load balancer. First /ready fails while everything else is still served
 * (SHUTDOWN_DELAY), so a balancer that polls it stops sending; then the close begins, and a request
 * still arriving on a kept-alive connection gets the service's own 503 with Retry-After and
 * `Connection: close` (Fastify's built-in answer has neither the error code nor Retry-After).
 */
export const drainingPlugin = fp(
  async (app) => {
    let draining = false;
    let closing = false;
    app.decorate('isDraining', () => draining || closing);
    app.decorate('drain', async (delayMs: number) => {
      draining = true;
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    });
    app.addHook('preClose', async () => {
      closing = true;
    });
    app.addHook('onRequest', async (request, reply) => {
      // the probes answer for themselves: /health that the process runs, /ready that it stops
      if (!closing || PROBES.has(request.routeOptions.url ?? '')) return;
      reply.header('connection', 'close');
      throw serviceStopping();
    });
  },
  { name: 'draining' },
);
