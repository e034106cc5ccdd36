/*
 * Provisions the suite's test server as the global setup does, says which kind it got, and
 * stops it: test/test-server.test.ts runs it against a broken container runtime.
 */
import { provisionServer } from '../setup/server.ts';

const server = await provisionServer();
console.log(`test server kind: ${server.kind}`);
await server.stop();
