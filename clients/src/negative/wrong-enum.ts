// Must NOT type-check: `.ci/run` asserts that `tsc` refuses it, naming the wrong value. A status
// filter is one of the document's enums, so a generated client refuses a value the server would.
import createClient from "openapi-fetch";
import type { paths } from "../generated/allot.js";

const client = createClient<paths>({ baseUrl: "http://127.0.0.1:8080" });
await client.GET("/v1/nodes/{id}/mailboxes", {
  params: { path: { id: "00000000-0000-0000-0000-000000000000" }, query: { status: "bogus" } },
});
