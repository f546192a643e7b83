// A webhook receiver for allot's integration suite (tests/api/webhooks.rs): verifies every
// delivery with the Standard Webhooks reference library (npm `standardwebhooks`, pinned in
// package.json), an implementation of the signature scheme independent of allot's own.
//
// Listens on 127.0.0.1 on a free port and prints `{"port": N}` on its first line of output.
// `PUT /_config` `{secrets: [...], statuses: [...]}` sets the secrets to verify with (each is
// tried on its own: a delivery is verified by a secret when the library accepts it with that
// secret) and the statuses to answer to the next deliveries in turn (then 200).
// `GET /_received` answers every delivery so far: `{id, timestamp, signature, body, verified:
// [bool per secret], answered}`. Anything else is a delivery.
import http from "node:http";
import { Webhook } from "standardwebhooks";

let secrets = [];
let statuses = [];
const received = [];

function read(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

function answer(response, status, body) {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}

const server = http.createServer(async (request, response) => {
  const body = await read(request);
  if (request.url === "/_config" && request.method === "PUT") {
    const config = JSON.parse(body);
    secrets = config.secrets ?? secrets;
    statuses = config.statuses ?? statuses;
    return answer(response, 200, { ok: true });
  }
  if (request.url === "/_received" && request.method === "GET") {
    return answer(response, 200, received);
  }
  const headers = {
    "webhook-id": request.headers["webhook-id"],
    "webhook-timestamp": request.headers["webhook-timestamp"],
    "webhook-signature": request.headers["webhook-signature"],
  };
  const verified = secrets.map((secret) => {
    try {
      new Webhook(secret).verify(body, headers);
      return true;
    } catch {
      return false;
    }
  });
  const status = statuses.length > 0 ? statuses.shift() : 200;
  received.push({
    id: headers["webhook-id"],
    timestamp: headers["webhook-timestamp"],
    signature: headers["webhook-signature"],
    method: request.method,
    path: request.url,
    content_type: request.headers["content-type"],
    body,
    verified,
    answered: status,
  });
  answer(response, status, { ok: status < 300 });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
// Ends with the test that started it: its stdin closes when the test drops it.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
