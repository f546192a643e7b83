// The README's walk-through, through a client generated from openapi/openapi.json with
// openapi-typescript and openapi-fetch: log in, set the licence, create a reseller and a customer,
// allocate down to it, register a domain, create a mailbox, import mailboxes from CSV, ask the
// check, and handle a quota-exceeded problem by its typed fields.
//
// `.ci/run` type-checks it with `tsc --strict` (the bar: a document a generated client can take at
// its word), then runs it with node against a freshly started allot (ALLOT_URL, ALLOT_PASSWORD).
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./generated/allot.js";

type Schemas = components["schemas"];
type Problem = Schemas["Problem"];

const baseUrl = process.env.ALLOT_URL ?? "http://127.0.0.1:8080";
const password = process.env.ALLOT_PASSWORD ?? "";

/** Fails the walk with what the server said. */
function fail(step: string, problem: unknown, status: number): never {
  throw new Error(`${step}: HTTP ${status}: ${JSON.stringify(problem)}`);
}

export async function walk(): Promise<void> {
  const client = createClient<paths>({ baseUrl });

  // Log in: a bearer token valid for 15 minutes.
  const login = await client.POST("/v1/auth/token", {
    body: { username: "admin", password },
  });
  if (!login.data) fail("log in", login.error, login.response.status);
  const token: string = login.data.access_token;
  const tokenType: Schemas["TokenType"] = login.data.token_type;
  const authorised: Middleware = {
    onRequest({ request }) {
      request.headers.set("Authorization", `${tokenType} ${token}`);
      return request;
    },
  };
  client.use(authorised);

  // Who am I? The admin of the owner node.
  const me = await client.GET("/v1/me");
  if (!me.data) fail("me", me.error, me.response.status);
  const owner = me.data.node_id;
  const kind: "account" | "api_key" = me.data.kind;
  if (kind !== "account" || me.data.role !== "admin") throw new Error("not the admin");

  // The owner's bulk licence.
  const licenceLines: Schemas["LicenceLine"][] = [
    { resource: "users", amount: 10000 },
    { resource: "module:base", amount: 10000 },
    { resource: "domains", amount: 2000 },
    { resource: "module:lft", amount: 500 },
  ];
  const licence = await client.PUT("/v1/licence", { body: { resources: licenceLines } });
  if (!licence.data) fail("licence", licence.error, licence.response.status);

  // A reseller under the owner, and a customer under the reseller.
  const reseller = await client.POST("/v1/nodes/{id}/children", {
    params: { path: { id: owner }, header: { "Idempotency-Key": crypto.randomUUID() } },
    body: { kind: "reseller", name: "Acme Reseller" },
  });
  if (!reseller.data) fail("reseller", reseller.error, reseller.response.status);
  const customer = await client.POST("/v1/nodes/{id}/children", {
    params: { path: { id: reseller.data.id } },
    body: { kind: "customer", name: "Example GmbH", contact_phone: "+49 30 1234-567" },
  });
  if (!customer.data) fail("customer", customer.error, customer.response.status);
  const status: Schemas["NodeStatus"] = customer.data.status;
  if (status !== "active") throw new Error(`a new customer is ${status}`);

  // Allocations flow down: to the reseller, then some of those to the customer.
  for (const [resource, toReseller, toCustomer] of [
    ["users", 1000, 50],
    ["module:base", 1000, 50],
    ["domains", 10, 2],
  ] as const) {
    const granted = await client.POST("/v1/nodes/{id}/allocations", {
      params: { path: { id: reseller.data.id } },
      body: { resource, amount: toReseller },
    });
    if (!granted.data) fail("allocate to the reseller", granted.error, granted.response.status);
    const down = await client.POST("/v1/nodes/{id}/allocations", {
      params: { path: { id: customer.data.id } },
      body: { resource, amount: toCustomer, ends_on: "2099-01-01" },
    });
    if (!down.data) fail("allocate to the customer", down.error, down.response.status);
  }

  // More than the reseller holds is refused, saying where, when and by how much.
  const tooMuch = await client.POST("/v1/nodes/{id}/allocations", {
    params: { path: { id: customer.data.id } },
    body: { resource: "users", amount: 5000 },
  });
  const refusal: Problem | undefined = tooMuch.error;
  if (tooMuch.response.status !== 409 || !refusal) {
    throw new Error(`5000 users: HTTP ${tooMuch.response.status}`);
  }
  if (tooMuch.response.headers.get("content-type") !== "application/problem+json") {
    throw new Error("a refusal without a problem document");
  }
  const quotaExceeded: Problem["type"] = "/problems/quota-exceeded";
  if (refusal.type !== quotaExceeded) throw new Error(`refused as ${refusal.type}`);
  const available: number = refusal.available ?? -1;
  const limit: number = refusal.limit ?? -1;
  if (refusal.resource !== "users" || limit !== 1000 || available !== 950) {
    throw new Error(`the refusal says ${JSON.stringify(refusal)}`);
  }

  // The customer registers a domain and a mailbox on it.
  const domain = await client.POST("/v1/nodes/{id}/domains", {
    params: { path: { id: customer.data.id } },
    body: { name: "Bücher.example", route: { host: "mx.example.net", port: 25, priority: 50 } },
  });
  if (!domain.data) fail("domain", domain.error, domain.response.status);
  const verification: Schemas["VerificationStatus"] = domain.data.verification.status;
  if (verification !== "pending") throw new Error(`a new domain is ${verification}`);
  const jane = await client.POST("/v1/nodes/{id}/mailboxes", {
    params: { path: { id: customer.data.id } },
    body: { address: "jane.doe@bücher.example", display_name: "Jane Doe" },
  });
  if (!jane.data) fail("mailbox", jane.error, jane.response.status);
  const origin: Schemas["MailboxOrigin"] = jane.data.origin;
  if (origin !== "manual" || !jane.data.modules.includes("base")) {
    throw new Error(`jane is ${JSON.stringify(jane.data)}`);
  }

  // Up to 10,000 mailboxes at once, from CSV.
  const csv = "address,display_name\nann@bücher.example,Ann\nbob@bücher.example,Bob\n";
  const imported = await client.POST("/v1/nodes/{id}/mailboxes/import", {
    params: { path: { id: customer.data.id }, query: { atomic: true } },
    body: csv,
    // The body goes as it is: openapi-fetch would otherwise send it as JSON.
    bodySerializer: (body) => (typeof body === "string" ? body : JSON.stringify(body)),
    headers: { "Content-Type": "text/csv" },
  });
  if (!imported.data) fail("import", imported.error, imported.response.status);
  const rows: Schemas["RowOutcome"][] = imported.data.rows;
  const outcomes: Schemas["RowStatus"][] = rows.map((row) => row.status);
  if (imported.data.created !== 2 || outcomes.some((o) => o !== "created")) {
    throw new Error(`the import says ${JSON.stringify(imported.data)}`);
  }

  // The customer's mailboxes, a page at a time, filtered by a typed status.
  const active: Schemas["ItemStatus"] = "active";
  const page = await client.GET("/v1/nodes/{id}/mailboxes", {
    params: { path: { id: customer.data.id }, query: { status: active, limit: 500 } },
  });
  if (!page.data) fail("mailboxes", page.error, page.response.status);
  const mailboxes: Schemas["MailboxView"][] = page.data.items;
  if (mailboxes.length < 3) throw new Error(`${mailboxes.length} mailboxes`);

  // What a mail worker asks: may jane send?
  const asked: Schemas["CheckRequest"] = {
    direction: "outbound",
    address: "jane.doe@bücher.example",
  };
  const check = await client.POST("/v1/check", { body: asked });
  if (!check.data) fail("check", check.error, check.response.status);
  const verdict: "accept" | "reject" | "defer" = check.data.verdict;
  console.log(`check: ${verdict} (${check.data.reason})`);

  // Limit, allocated, used and free per resource.
  const usage = await client.GET("/v1/nodes/{id}/usage", {
    params: { path: { id: customer.data.id } },
  });
  if (!usage.data) fail("usage", usage.error, usage.response.status);
  const users = usage.data.resources.find((r) => r.resource === "users");
  if (users?.used !== 3 || users.limit !== 50) throw new Error(`usage ${JSON.stringify(users)}`);
  console.log("the walk-through went through");
}

await walk();
