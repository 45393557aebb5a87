// Subscribes to clusterUpdated with a reference client and prints each event as a JSON line.
// Usage: node subscribe.mjs <ws|sse> <gateway URL> <identifier> <events to wait for>
import { createClient as createWsClient } from "graphql-ws";
import { createClient as createSseClient } from "graphql-sse";
import WebSocket from "ws";

const [transport, url, identifier, wanted] = process.argv.slice(2);
const query = `subscription Watch($id: String!) {
  clusterUpdated(identifier: $id) { name status modifiedAt }
}`;

const client =
  transport === "ws"
    ? createWsClient({ url: url.replace(/^http/, "ws") + "/graphql", webSocketImpl: WebSocket })
    : createSseClient({ url: url + "/graphql" });

let seen = 0;
const events = client.iterate({ query, variables: { id: identifier } });
try {
  for await (const event of events) {
    console.log(JSON.stringify(event));
    seen += 1;
    if (seen >= Number(wanted)) break;
  }
} catch (error) {
  console.log(JSON.stringify({ clientError: String(error && error.message ? error.message : error) }));
  process.exitCode = 1;
} finally {
  client.dispose();
}
