// The official MCP TypeScript SDK's client against hookgate's /mcp: node run.mjs URL KEY.
// Prints one JSON object with what it saw, for the Python test to check.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, key] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${key}` } },
});
const client = new Client({ name: "hookgate-ts-test", version: "1.0.0" });
await client.connect(transport);

const out = {
  protocolVersion: transport.protocolVersion,
  sessionId: transport.sessionId,
  server: client.getServerVersion(),
};
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
out.add = await client.callTool({ name: "calc__add", arguments: { a: 20, b: 22 } });
const progress = [];
out.agent = await client.callTool(
  { name: "agent__helper", arguments: { prompt: "from typescript" } },
  undefined,
  { onprogress: (p) => progress.push(p) },
);
out.progress = progress;
out.failed = await client.callTool({ name: "calc__fail", arguments: { reason: "ts" } });
try {
  await client.callTool({ name: "calc__nope", arguments: {} });
  out.unknown = "no error";
} catch (err) {
  out.unknown = { code: err.code, message: err.message };
}
await transport.terminateSession();
await client.close();
console.log(JSON.stringify(out));
