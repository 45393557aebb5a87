// Subscribes to clusterUpdated with a reference client and prints each event as a JSON line.
// Usage: node subscribe.mjs <ws|sse> <gateway URL> <identifier> <events to wait for> [params]
// params: JSON sent as graphql-ws's connectionParams (the connection_init payload), or as
// graphql-sse's request headers.
import { createClient as createWsClient } from "graphql-ws";
import { createClient as createSseClient } from "graphql-sse";
import WebSocket from "ws";

const [transport, url, identifier, wanted, params] = process.argv.slice(2);
const credentials = params ? JSON.parse(params) : undefined;
const query = `subscription Watch($id: String!) {
  clusterUpdated(identifier: $id) { name status modifiedAt }
}`;

const client =
  transport === "ws"
    ? createWsClient({
        url: url.replace(/^http/, "ws") + "/graphql",
        webSocketImpl: WebSocket,
        connectionParams: credentials,
        retryAttempts: 0,
      })
    : createSseClient({ url: url + "/graphql", headers: credentials, retryAttempts: 0 });

let seen = 0;
const events = client.iterate({ query, variables: { id: identifier } });
try {
  for await (const event of events) {
    console.log(JSON.stringify(event));
    seen += 1;
    if (seen >= Number(wanted)) break;
  }
} catch (error) {
  // A WebSocket closing is a CloseEvent: its code and reason say why.
  const closed = error && typeof error.code === "number" ? { code: error.code, reason: error.reason } : {};
  console.log(JSON.stringify({ clientError: String(error && error.message ? error.message : error), ...closed }));
  process.exitCode = 1;
} finally {
  client.dispose();
}
